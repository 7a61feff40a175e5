/**
 * What a command may touch of the process: its output streams, environment and signals.
 * Passed in rather than used globally so that each command states what it needs.
 */

export type StopSignal = 'SIGINT' | 'SIGTERM'

export interface CommandIo {
  out(text: string): void
  err(text: string): void
  readonly env: Readonly<Record<string, string | undefined>>
  readonly isTty: boolean
  readonly errIsTty: boolean
  /** Aborts on the first SIGINT/SIGTERM; `reason` is the signal name. */
  readonly signal: AbortSignal
  /** Resolves with the first SIGINT/SIGTERM received. */
  untilSignal(): Promise<StopSignal>
}

/**
 * The real process. The first SIGINT/SIGTERM aborts `signal` so that commands clean up; a second
 * one exits at once (the user insists).
 */
export function processIo(): CommandIo & { dispose(): void } {
  const ac = new AbortController()
  let first: Promise<StopSignal> | undefined
  const waiters: ((s: StopSignal) => void)[] = []
  const onSignal = (s: StopSignal): void => {
    if (ac.signal.aborted) {
      process.exit(s === 'SIGINT' ? 130 : 143)
    }
    ac.abort(s)
    for (const w of waiters.splice(0)) w(s)
  }
  const onInt = (): void => {
    onSignal('SIGINT')
  }
  const onTerm = (): void => {
    onSignal('SIGTERM')
  }
  process.on('SIGINT', onInt)
  process.on('SIGTERM', onTerm)
  return {
    out: (text) => {
      process.stdout.write(text)
    },
    err: (text) => {
      process.stderr.write(text)
    },
    env: process.env,
    isTty: (process.stdout.isTTY as boolean | undefined) === true,
    errIsTty: (process.stderr.isTTY as boolean | undefined) === true,
    signal: ac.signal,
    untilSignal() {
      first ??= ac.signal.aborted
        ? Promise.resolve(ac.signal.reason as StopSignal)
        : new Promise<StopSignal>((resolve) => waiters.push(resolve))
      return first
    },
    dispose() {
      process.off('SIGINT', onInt)
      process.off('SIGTERM', onTerm)
    },
  }
}
