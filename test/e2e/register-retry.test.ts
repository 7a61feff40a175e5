/**
 * First registration on etcd, as a service's entry module does it (`await wf.register()` at top
 * level, in its own process): while etcd is unreachable it retries within `timeoutMs` and the
 * process stays alive; it registers once etcd comes up, or rejects with a retryable
 * REGISTRATION_FAILED after the timeout, and exits 0 either way.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { EtcdServer, freePort } from '../support/etcd.js'
import { withDeadline } from '../support/wait.js'

const CHILD = fileURLToPath(new URL('./fixtures/register-retry-child.ts', import.meta.url))

interface Child {
  readonly proc: ChildProcess
  readonly out: { stdout: string; stderr: string }
  readonly exit: Promise<number | null>
  waitFor(pattern: RegExp, stream: 'stdout' | 'stderr'): Promise<void>
}

function child(hosts: string, timeoutMs: number): Child {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, hosts, String(timeoutMs)], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, NODE_DEBUG: 'wayfind' },
  })
  const out = { stdout: '', stderr: '' }
  const waiters: (() => void)[] = []
  for (const stream of ['stdout', 'stderr'] as const)
    proc[stream].setEncoding('utf8').on('data', (chunk: string) => {
      out[stream] += chunk
      for (const w of waiters.splice(0)) w()
    })
  const exit = once(proc, 'exit').then(([code]) => code as number | null)
  return {
    proc,
    out,
    exit,
    waitFor: (pattern, stream) =>
      withDeadline(
        new Promise<void>((resolve) => {
          const check = (): void => {
            if (pattern.test(out[stream])) resolve()
            else waiters.push(check)
          }
          check()
        }),
        20_000,
        `${stream} to match ${String(pattern)} (stdout ${JSON.stringify(out.stdout)})`,
      ),
  }
}

describe('first registration on etcd, from a child process', () => {
  it('etcd stays unreachable: rejects after ~timeoutMs with retryable true, and the process lives until then', async () => {
    const port = await freePort()
    const started = performance.now()
    const c = child(`127.0.0.1:${String(port)}`, 1_500)
    const code = await withDeadline(c.exit, 20_000, 'the child to exit')
    const elapsed = performance.now() - started
    expect(code).toBe(0)
    expect(c.out.stdout.trim()).toBe('WAYFIND_ERR_REGISTRATION_FAILED retryable=true')
    // It waited for the budget (process start-up included), instead of failing in a few ms.
    expect(elapsed).toBeGreaterThanOrEqual(1_500)
  })

  it('etcd comes up within timeoutMs: registers', async () => {
    const server = await EtcdServer.start()
    try {
      await server.stop()
      const c = child(server.host, 30_000)
      await c.waitFor(/attempt 1 failed/, 'stderr')
      await server.restart()
      expect(await withDeadline(c.exit, 30_000, 'the child to exit')).toBe(0)
      expect(c.out.stdout.trim()).toBe('registered')
    } finally {
      await server.remove()
    }
  })
})
