/**
 * Work kept off the request path and never run twice at once (eviction, in the disk tier and the
 * source store): `schedule()` runs it after `delayMs`, so a burst of writes schedules it once;
 * asked while it runs, it runs once more after. The timer is unref'd: a pending run must not keep
 * a CLI command (or a test) alive.
 */
export interface DebouncedTaskOptions {
  delayMs: number;
  run: () => Promise<void>;
  /** Whether there is anything to do now; `schedule()` does nothing otherwise. */
  wanted: () => boolean;
  onError: (error: unknown) => void;
}

export interface DebouncedTask {
  schedule(): void;
  /** Runs it now, or joins the run in progress (which then runs once more). */
  runNow(): Promise<void>;
  /** Resolves when nothing is scheduled or running; a scheduled run is started now. */
  idle(): Promise<void>;
  /** Cancels what is scheduled and waits for a run in progress. */
  close(): Promise<void>;
}

export function createDebouncedTask(options: DebouncedTaskOptions): DebouncedTask {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;
  let again = false;

  function runNow(): Promise<void> {
    if (running) {
      again = true;
      return running;
    }
    const run: Promise<void> = options
      .run()
      .catch(options.onError)
      .finally(() => {
        running = undefined;
        if (again) {
          again = false;
          schedule();
        }
      });
    running = run;
    return run;
  }

  function schedule(): void {
    if (!options.wanted()) return;
    if (running) {
      again = true;
      return;
    }
    if (timer) return;
    timer = setTimeout(() => {
      timer = undefined;
      void runNow();
    }, options.delayMs);
    timer.unref();
  }

  return {
    schedule,
    runNow,
    async idle() {
      while (timer || running) {
        if (timer) {
          clearTimeout(timer);
          timer = undefined;
          void runNow();
        }
        await running;
      }
    },
    async close() {
      if (timer) clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}
