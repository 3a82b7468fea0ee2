# syntax=docker/dockerfile:1
# The mailplane image: the `mailplane` command as the entrypoint (under tini as PID 1), so
#   docker run IMAGE validate /cfg/mailserver.yaml     docker run IMAGE plan …
# work as well as the default `run --config /etc/mailplane/config/mailserver.yaml` (where the
# Helm chart mounts the config); without root, production dependencies only, no npm or yarn.
# Build: docker build -t registry.example.com/mailplane:0.1.0 .
#
# The base is pinned by digest (node:24-bookworm-slim, Node 24.18.0): a rebuild gets the same
# base until someone moves the pin on purpose (Dependabot or Renovate can). Another base:
#   docker build --build-arg NODE_IMAGE=node:24-bookworm-slim@sha256:<digest> .
ARG NODE_IMAGE=node:24-bookworm-slim@sha256:6f7b03f7c2c8e2e784dcf9295400527b9b1270fd37b7e9a7285cf83b6951452d

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
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
LABEL org.opencontainers.image.title="mailplane" \
      org.opencontainers.image.description="A mail server declared in one file and reconciled live" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.base.name="${NODE_IMAGE}"
ENV NODE_ENV=production
WORKDIR /app
# tini as PID 1 (signals reach mailplane, zombies are reaped); then no package manager is left:
# npm, npx, corepack and yarn go, and apt's lists with them
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/* \
 && rm -rf /usr/local/lib/node_modules/npm /usr/local/lib/node_modules/corepack /opt/yarn-* \
 && rm -f /usr/local/bin/npm /usr/local/bin/npx /usr/local/bin/corepack /usr/local/bin/yarn /usr/local/bin/yarnpkg
COPY --from=deps /app/node_modules ./node_modules
COPY --from=build /src/dist ./dist
COPY package.json ./
COPY bin ./bin
COPY schema ./schema
# `mailplane` on PATH (the alert runbooks and `kubectl exec … -- mailplane queue list` use it);
# where the chart mounts the config and the data volume, writable for `docker run` without one
RUN ln -s /app/bin/mailplane.js /usr/local/bin/mailplane \
 && mkdir -p /etc/mailplane/config /var/lib/mailplane && chown 10001:10001 /var/lib/mailplane
# the same numeric user as the chart's podSecurityContext (runAsNonRoot needs a number)
USER 10001:10001
# SMTP listeners on high ports (no root to bind 25/587/465) and the ops endpoint
EXPOSE 2525 2587 2465 9465
ENTRYPOINT ["/usr/bin/tini", "--", "mailplane"]
CMD ["run", "--config", "/etc/mailplane/config/mailserver.yaml"]
