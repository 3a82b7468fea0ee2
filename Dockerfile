# syntax=docker/dockerfile:1
# The mailplane image: `mailplane run` as the entrypoint, reading the config where the Helm
# chart mounts it (/etc/mailplane/config/mailserver.yaml), without root, with production
# dependencies only. Build: docker build -t mailplane/mailplane:0.1.0 .
ARG NODE_IMAGE=node:24-bookworm-slim

# Compile TypeScript with the dev dependencies.
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the prepare script would build before the sources are copied
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
COPY schema ./schema
RUN npm run build

# Production dependencies only (the native ones ship prebuilt; none needs an install script).
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM ${NODE_IMAGE}
ENV NODE_ENV=production
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY schema ./schema
# where the chart mounts the config and the data volume; writable for `docker run` without one
RUN mkdir -p /etc/mailplane/config /var/lib/mailplane && chown 10001:10001 /var/lib/mailplane
# the same numeric user as the chart's podSecurityContext (runAsNonRoot needs a number)
USER 10001:10001
# SMTP listeners on high ports (no root to bind 25/587/465) and the ops endpoint
EXPOSE 2525 2587 2465 9465
ENTRYPOINT ["node", "/app/bin/mailplane.js", "run"]
CMD ["--config", "/etc/mailplane/config/mailserver.yaml"]
