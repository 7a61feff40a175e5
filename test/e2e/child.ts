/**
 * Spawning a child process for the end-to-end tests and waiting on its output lines (with
 * deadlines, never sleeps).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { withDeadline } from '../support/wait.js'

export interface Child {
  readonly proc: ChildProcess
  stdout(): string
  stderr(): string
  /** Resolves with the first match of `pattern` in stdout (now or later). */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  readonly exit: Promise<{ code: number | null; signal: NodeJS.Signals | null; at: number }>
}

const LIVE = new Set<ChildProcess>()
process.once('exit', () => {
  for (const p of LIVE) p.kill('SIGKILL')
})

/** Runs `node --import <preload>... file ...args` (preload: `['tsx']` by default). */
export function startChild(
  file: string,
  args: readonly string[],
  options: { preload?: readonly string[]; env?: NodeJS.ProcessEnv; stdin?: boolean } = {},
): Child {
  const proc = spawn(
    process.execPath,
    [...(options.preload ?? ['tsx']).flatMap((p) => ['--import', p]), file, ...args],
    {
      stdio: [options.stdin === true ? 'pipe' : 'ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...options.env },
    },
  )
  LIVE.add(proc)
  let out = ''
  let err = ''
  const waiters: { pattern: RegExp; resolve: (m: RegExpMatchArray) => void }[] = []
  proc.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
    for (const w of [...waiters]) {
      const m = out.match(w.pattern)
      if (m !== null) {
        waiters.splice(waiters.indexOf(w), 1)
        w.resolve(m)
      }
    }
  })
  proc.stderr?.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const exit = once(proc, 'exit').then(([code, signal]) => {
    LIVE.delete(proc)
    return { code: code as number | null, signal: signal as NodeJS.Signals | null, at: Date.now() }
  })
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitFor(pattern, timeoutMs = 20_000) {
      const m = out.match(pattern)
      if (m !== null) return Promise.resolve(m)
      return withDeadline(
        new Promise<RegExpMatchArray>((resolve) => waiters.push({ pattern, resolve })),
        timeoutMs,
        `child output ${String(pattern)} (stdout so far: ${JSON.stringify(out)}, stderr: ${JSON.stringify(err)})`,
      )
    },
  }
}
