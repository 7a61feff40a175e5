/**
 * An operation a caller awaits keeps the process alive until it settles, although every
 * background loop is unref'd: a script that awaits `resolve()` (or a request waiting for its
 * first instance) at the top level of an ES module gets its typed timeout and ends normally,
 * instead of Node ending the event loop under the pending await (exit code 13, no output).
 */
import { spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { freePort } from '../support/etcd.js'
import { withDeadline } from '../support/wait.js'

const FIXTURE = fileURLToPath(new URL('./fixtures/awaited-child.ts', import.meta.url))

async function run(
  args: string[],
): Promise<{ code: number | null; signal: string | null; out: string; err: string }> {
  const proc = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], {
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let out = ''
  let err = ''
  proc.stdout.setEncoding('utf8').on('data', (c: string) => (out += c))
  proc.stderr.setEncoding('utf8').on('data', (c: string) => (err += c))
  const [code, signal] = (await withDeadline(
    once(proc, 'exit'),
    30_000,
    `the child ${args.join(' ')} to exit`,
  )) as [number | null, string | null]
  return { code, signal, out, err }
}

/** A loopback port that was bound and then released: connecting to it is refused. */
const closedPort = freePort

describe('awaited work keeps the process alive', () => {
  it('resolve() on an empty memory registry: prints the typed timeout, exits 0', async () => {
    const r = await run(['memory'])
    expect(r.out).toBe('WAYFIND_ERR_RESOLVE_TIMEOUT\nclosed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })

  it('resolve() with Consul unreachable: prints the typed timeout, exits 0', async () => {
    const r = await run(['consul', `http://127.0.0.1:${String(await closedPort())}`])
    expect(r.out).toBe('WAYFIND_ERR_RESOLVE_TIMEOUT\nclosed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })

  it('resolve() with etcd unreachable: prints the typed timeout, exits 0', async () => {
    const r = await run(['etcd', `http://127.0.0.1:${String(await closedPort())}`])
    expect(r.out).toBe('WAYFIND_ERR_RESOLVE_TIMEOUT\nclosed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })

  it('a request through the dispatcher waiting for a first instance: typed error, exits 0', async () => {
    const r = await run(['memory', '', 'fetch'])
    expect(r.out).toBe('WAYFIND_ERR_RESOLVE_TIMEOUT\nclosed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })

  it('a request waiting out a Retry-After before its retry: answered, exits 0', async () => {
    const r = await run(['memory', '', 'retry'])
    expect(r.out).toBe('200 ok\nclosed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })

  it('close() with the registry gone: bounded, then exits 0', async () => {
    const r = await run(['memory', '', 'close'])
    expect(r.out).toBe('closed\n')
    expect({ code: r.code, signal: r.signal }).toEqual({ code: 0, signal: null })
  })
})
