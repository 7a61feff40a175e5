/**
 * Drain, measured: a service with 400 ms handlers under a steady stream of POSTs from another
 * process (through `wf.dispatcher`) is SIGTERMed with the production defaults. Asserts 0 failed
 * requests, that the caller saw the deregistration before the server stopped accepting, and an
 * exit within the documented bound; then the same with the registry down at SIGTERM. Prints the
 * timings. Real etcd and the Consul test server.
 */
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { EtcdServer } from '../support/etcd.js'
import { startConsulServer, type ConsulTestServer } from '../support/consul-server/index.js'
import { startChild, type Child } from './child.js'

const SERVICE = fileURLToPath(new URL('./fixtures/drain-service.ts', import.meta.url))
const CALLER = fileURLToPath(new URL('./fixtures/drain-caller.ts', import.meta.url))

/** The documented bound with the defaults: shutdownTimeoutMs + drainDelayMs + drainTimeoutMs + 1 s. */
const BOUND_MS = 3_000 + 5_000 + 10_000 + 1_000

const at = (line: RegExpMatchArray): number => Number(line[1])

interface Registry {
  readonly kind: 'consul' | 'etcd'
  url: string
  stop(): Promise<void>
}

let consulServer: ConsulTestServer
let etcdServer: EtcdServer
beforeAll(async () => {
  consulServer = await startConsulServer()
  etcdServer = await EtcdServer.start()
})
afterAll(async () => {
  await consulServer.close()
  await etcdServer.remove()
})

const registries: (() => Registry)[] = [
  () => ({ kind: 'consul', url: consulServer.url, stop: () => consulServer.close() }),
  () => ({
    kind: 'etcd',
    url: `http://127.0.0.1:${String(etcdServer.clientPort)}`,
    stop: () => etcdServer.stop(),
  }),
]

function service(r: Registry, id: string): Child {
  return startChild(SERVICE, [r.kind, r.url, id])
}

describe.each(registries.map((make, i) => ({ make, name: i === 0 ? 'consul' : 'etcd' })))(
  'drain on SIGTERM ($name)',
  ({ make }) => {
    it('loses no request: removal seen before the server stops accepting, exit within the bound', async () => {
      const r = make()
      const leaving = service(r, 'orders-leaving')
      const staying = service(r, 'orders-staying')
      try {
        await Promise.all([leaving.waitFor(/ready/), staying.waitFor(/ready/)])
        const caller = startChild(CALLER, [r.kind, r.url, '2'], { stdin: true })
        await caller.waitFor(/ready/)
        // The stream reaches both instances; then SIGTERM one of them.
        await caller.waitFor(/first orders-leaving/)
        await caller.waitFor(/first orders-staying/)
        const sigterm = Date.now()
        leaving.proc.kill('SIGTERM')
        const removed = at(await caller.waitFor(/removed orders-leaving (\d+)/, BOUND_MS))
        const deregistered = at(await leaving.waitFor(/deregistered (\d+)/, BOUND_MS))
        const stopAccepting = at(await leaving.waitFor(/stop-accepting (\d+)/, BOUND_MS))
        const exited = await leaving.exit
        caller.proc.stdin?.write('stop\n')
        const summary = JSON.parse((await caller.waitFor(/^(\{.*\})$/m, 10_000))[1] ?? '{}') as {
          ok: number
          failed: number
          failures: string[]
          lastSentTo: Record<string, number>
        }
        await caller.exit
        const lastSent = summary.lastSentTo['orders-leaving'] ?? 0
        process.stdout.write(
          `drain (${r.kind}): deregistered +${String(deregistered - sigterm)} ms, ` +
            `caller saw removal +${String(removed - sigterm)} ms, ` +
            `last request sent to it +${String(lastSent - sigterm)} ms, ` +
            `stopped accepting +${String(stopAccepting - sigterm)} ms, ` +
            `exited +${String(exited.at - sigterm)} ms (bound ${String(BOUND_MS)} ms); ` +
            `${String(summary.ok)} ok, ${String(summary.failed)} failed\n`,
        )
        expect(summary.failures).toEqual([])
        expect(summary.failed).toBe(0)
        expect(summary.ok).toBeGreaterThan(20)
        expect(removed).toBeLessThan(stopAccepting)
        expect(lastSent).toBeLessThan(stopAccepting)
        expect({ code: exited.code, signal: exited.signal }).toEqual({
          code: null,
          signal: 'SIGTERM',
        })
        expect(exited.at - sigterm).toBeLessThan(BOUND_MS)
      } finally {
        leaving.proc.kill('SIGKILL')
        staying.proc.kill('SIGKILL')
        await staying.exit
      }
    })
  },
)

describe('drain on SIGTERM with the registry down', () => {
  it.each(['consul', 'etcd'] as const)(
    '%s: the process still ends by the signal within the bound',
    async (kind) => {
      const consulDown = kind === 'consul' ? await startConsulServer() : undefined
      const etcdDown = kind === 'etcd' ? await EtcdServer.start() : undefined
      const url = consulDown?.url ?? `http://127.0.0.1:${String(etcdDown?.clientPort ?? 0)}`
      const child = startChild(SERVICE, [kind, url, 'orders-alone'])
      try {
        await child.waitFor(/ready/)
        await consulDown?.close()
        await etcdDown?.stop()
        const sigterm = Date.now()
        child.proc.kill('SIGTERM')
        const stopAccepting = at(await child.waitFor(/stop-accepting (\d+)/, BOUND_MS))
        const exited = await child.exit
        process.stdout.write(
          `drain (${kind} down): stopped accepting +${String(stopAccepting - sigterm)} ms, ` +
            `exited +${String(exited.at - sigterm)} ms (bound ${String(BOUND_MS)} ms)\n`,
        )
        expect({ code: exited.code, signal: exited.signal }).toEqual({
          code: null,
          signal: 'SIGTERM',
        })
        expect(exited.at - sigterm).toBeLessThan(BOUND_MS)
      } finally {
        child.proc.kill('SIGKILL')
        await etcdDown?.remove()
      }
    },
  )
})

describe('a second signal while draining', () => {
  it('ends the process at once (Ctrl-C twice)', async () => {
    const child = startChild(SERVICE, ['memory', '', 'orders-impatient'])
    try {
      await child.waitFor(/ready/)
      child.proc.kill('SIGINT')
      await child.waitFor(/deregistered/)
      child.proc.kill('SIGINT')
      const exited = await child.exit
      expect({ code: exited.code, signal: exited.signal }).toEqual({ code: null, signal: 'SIGINT' })
      // It did not wait for drainDelayMs (5 s) to stop accepting.
      expect(child.stdout()).not.toContain('stop-accepting')
    } finally {
      child.proc.kill('SIGKILL')
    }
  })
})
