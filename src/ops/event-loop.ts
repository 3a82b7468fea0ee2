// How long the event loop made ready work wait: once a second, the worst delay of that second
// goes into a histogram (mailplane_event_loop_delay_seconds); /status shows the worst since the
// server started serving.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Metrics } from './metrics.js';

export class EventLoopMonitor {
  private readonly h: ReturnType<typeof monitorEventLoopDelay>;
  private readonly timer: NodeJS.Timeout;
  /** worst delay seen since start, in ms */
  worstMs = 0;
  /** worst delay of the last complete second, in ms */
  lastSecondMs = 0;

  constructor(metrics: Metrics) {
    this.h = monitorEventLoopDelay({ resolution: 5 });
    this.h.enable();
    this.timer = setInterval(() => {
      if (this.h.count === 0) return;
      // the sampling timer itself fires every `resolution` ms: what exceeds it is the delay
      const ms = Math.max(0, this.h.max / 1e6 - 5);
      this.h.reset();
      this.lastSecondMs = ms;
      if (ms > this.worstMs) this.worstMs = ms;
      metrics.eventLoopDelay.observe(ms / 1000);
    }, 1000);
    this.timer.unref();
  }

  /** Forgets what was seen so far (start-up: compiling the schema, binding, before serving). */
  reset(): void {
    this.h.reset();
    this.worstMs = 0;
    this.lastSecondMs = 0;
  }

  stop(): void {
    clearInterval(this.timer);
    this.h.disable();
  }
}
