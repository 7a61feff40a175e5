/**
 * A process using wayfind ends by itself: after close(), and after SIGTERM or a crash with a
 * registration (deregistered first, then the process ends as it would have without wayfind).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { withDeadline } from '../support/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/lifecycle-child.ts', import.meta.url))

interface Child {
  proc: ChildProcess
  stdout: () => string
  stderr: () => string
  waitForLine(pattern: RegExp, timeoutMs?: number): Promise<void>
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>
}

function start(mode: string): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, mode], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  const waiters: { pattern: RegExp; resolve: () => void }[] = []
  proc.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    out += chunk
    for (const w of [...waiters]) if (w.pattern.test(out)) w.resolve()
  })
  proc.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk))
  const exit = once(proc, 'exit').then(([code, signal]) => ({
    code: code as number | null,
    signal: signal as NodeJS.Signals | null,
  }))
  return {
    proc,
    stdout: () => out,
    stderr: () => err,
    exit,
    waitForLine(pattern, timeoutMs = 20_000) {
      if (pattern.test(out)) return Promise.resolve()
      return withDeadline(
        new Promise<void>((resolve) => waiters.push({ pattern, resolve })),
        timeoutMs,
        `child output ${pattern} (stdout so far: ${JSON.stringify(out)}, stderr: ${JSON.stringify(err)})`,
      )
    },
  }
}

describe('process lifecycle', () => {
  it('exits by itself after close()', async () => {
    const child = start('close')
    const { code, signal } = await withDeadline(
      child.exit,
      30_000,
      'the child to exit after close()',
    )
    expect(child.stderr()).toBe('')
    expect(child.stdout()).toContain('resolved 1 status 200 body ok')
    expect(child.stdout()).toContain('deregistered child-close')
    expect(child.stdout()).toContain('closed')
    expect({ code, signal }).toEqual({ code: 0, signal: null })
  })

  it('deregisters on SIGTERM, then dies of SIGTERM as it would have', async () => {
    const child = start('sigterm')
    await child.waitForLine(/ready/)
    const sentAt = Date.now()
    child.proc.kill('SIGTERM')
    const { code, signal } = await withDeadline(
      child.exit,
      10_000,
      'the child to exit after SIGTERM',
    )
    expect(child.stdout()).toContain('deregistered child-sigterm')
    expect({ code, signal }).toEqual({ code: null, signal: 'SIGTERM' })
    expect(Date.now() - sentAt).toBeLessThan(5_000) // well inside the bound, even on a loaded machine
  })

  it('leaves the exit to an application that handles SIGTERM itself', async () => {
    const child = start('own-handler')
    await child.waitForLine(/ready/)
    child.proc.kill('SIGTERM')
    const { code, signal } = await withDeadline(
      child.exit,
      10_000,
      'the child to exit after its own handler',
    )
    expect(child.stdout()).toContain('app handler')
    expect(child.stdout()).toContain('deregistered child-own-handler')
    expect({ code, signal }).toEqual({ code: 0, signal: null })
  })

  it('deregisters on a crash, then crashes as it would have (stack on stderr, code 1)', async () => {
    const child = start('crash')
    const { code, signal } = await withDeadline(child.exit, 10_000, 'the child to crash')
    expect(child.stdout()).toContain('deregistered child-crash')
    expect(child.stderr()).toContain('boom from the app')
    expect({ code, signal }).toEqual({ code: 1, signal: null })
  })
})
