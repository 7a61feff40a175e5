/**
 * Process end: on SIGTERM/SIGINT each registration drains (deregister, wait for callers to see
 * it, let requests in flight finish, close the client); on a crash (uncaught exception,
 * unhandled rejection) it only deregisters. Bounded in time, run once, and then the process ends
 * the way it would have without us: the signal is raised again, the error thrown again.
 *
 * Signals are per process, so this is the one piece of process-wide state in wayfind. It is
 * created on the first `register({ handleSignals: true })`, never at import, and its listeners
 * are removed as soon as no registration needs them.
 */

const SIGNALS = ['SIGTERM', 'SIGINT'] as const
type HandledSignal = (typeof SIGNALS)[number]

/** Why a shutdown task runs. */
export type ShutdownCause =
  | {
      readonly kind: 'signal'
      readonly signal: HandledSignal
      /** True when wayfind will raise the signal again (the application does not listen). */
      readonly processEnds: boolean
    }
  | { readonly kind: 'crash' }

/** Something to run at shutdown: a registration's bounded drain or deregistration. */
export interface ShutdownTask {
  /** Must settle within `boundMs(cause.kind)` (the coordinator also bounds it). */
  run(cause: ShutdownCause): Promise<void>
  boundMs(kind: ShutdownCause['kind']): number
  readonly signals: boolean
  readonly crashes: boolean
}

class ShutdownCoordinator {
  readonly #tasks = new Set<ShutdownTask>()
  #signalsInstalled = false
  #crashesInstalled = false
  #running: Promise<void> | undefined

  add(task: ShutdownTask): () => void {
    this.#tasks.add(task)
    this.#sync()
    return () => {
      this.#tasks.delete(task)
      this.#sync()
    }
  }

  #sync(): void {
    const wantSignals = [...this.#tasks].some((t) => t.signals)
    const wantCrashes = [...this.#tasks].some((t) => t.crashes)
    if (wantSignals && !this.#signalsInstalled) {
      for (const s of SIGNALS) process.on(s, this.#onSignal)
      this.#signalsInstalled = true
    } else if (!wantSignals && this.#signalsInstalled && this.#running === undefined) {
      for (const s of SIGNALS) process.off(s, this.#onSignal)
      this.#signalsInstalled = false
    }
    if (wantCrashes && !this.#crashesInstalled) {
      process.on('uncaughtException', this.#onCrash)
      process.on('unhandledRejection', this.#onRejection)
      this.#crashesInstalled = true
    } else if (!wantCrashes && this.#crashesInstalled && this.#running === undefined) {
      this.#removeCrashListeners()
    }
  }

  #removeCrashListeners(): void {
    process.off('uncaughtException', this.#onCrash)
    process.off('unhandledRejection', this.#onRejection)
    this.#crashesInstalled = false
  }

  /** Runs every matching task once, all at once, bounded by the largest bound: one deadline. */
  #runAll(cause: ShutdownCause): Promise<void> {
    this.#running ??= (async () => {
      const tasks = [...this.#tasks].filter((t) => (cause.kind === 'crash' ? t.crashes : t.signals))
      const bound = Math.max(0, ...tasks.map((t) => t.boundMs(cause.kind))) + 50
      let timer: NodeJS.Timeout | undefined
      // This timer is deliberately NOT unref'd: it keeps the process alive just long enough
      // to finish deregistering, and never longer than the bound.
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, bound)
      })
      await Promise.race([Promise.allSettled(tasks.map((t) => t.run(cause))), deadline])
      clearTimeout(timer)
    })()
    return this.#running
  }

  readonly #onSignal = (signal: HandledSignal): void => {
    if (this.#running !== undefined) {
      // A second signal while deregistering (Ctrl-C twice): stop waiting, end now.
      this.#reraise(signal)
      return
    }
    // Only our listener: the process ends by the signal once we are done.
    const processEnds = process.listenerCount(signal) === 1
    void this.#runAll({ kind: 'signal', signal, processEnds }).then(() => {
      this.#reraise(signal)
    })
  }

  #reraise(signal: HandledSignal): void {
    for (const s of SIGNALS) process.off(s, this.#onSignal)
    this.#signalsInstalled = false
    // If the application listens for this signal too, it has been told (same emit) and owns
    // the decision to exit. Otherwise end the way Node would have: by the signal itself.
    if (process.listenerCount(signal) === 0) process.kill(process.pid, signal)
  }

  readonly #onCrash = (error: unknown): void => {
    // Another uncaughtException listener means the application handles crashes itself and
    // the process survives: nothing for us to do.
    if (process.listenerCount('uncaughtException') > 1) return
    void this.#runAll({ kind: 'crash' }).then(() => {
      this.#removeCrashListeners()
      // Thrown again with no listener left: Node prints it and exits with code 1, as it would
      // have without us.
      process.nextTick(() => {
        throw error
      })
    })
  }

  readonly #onRejection = (reason: unknown): void => {
    if (process.listenerCount('unhandledRejection') > 1) return
    const error =
      reason instanceof Error
        ? reason
        : Object.assign(new Error(`Unhandled promise rejection: ${String(reason)}`), {
            code: 'ERR_UNHANDLED_REJECTION',
          })
    if (process.listenerCount('uncaughtException') > 1) {
      // Node would turn the rejection into an uncaught exception, which the application
      // handles itself: hand it over unchanged.
      process.nextTick(() => {
        throw error
      })
      return
    }
    void this.#runAll({ kind: 'crash' }).then(() => {
      this.#removeCrashListeners()
      process.nextTick(() => {
        throw error
      })
    })
  }
}

let coordinator: ShutdownCoordinator | undefined

/** Registers a task to run on SIGTERM/SIGINT and/or crashes; returns its removal. */
export function onShutdown(task: ShutdownTask): () => void {
  coordinator ??= new ShutdownCoordinator()
  return coordinator.add(task)
}
