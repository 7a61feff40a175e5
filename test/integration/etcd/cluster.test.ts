/**
 * A 3-member cluster whose leader is SIGKILLed while instances churn: every watcher's cache
 * converges to what the cluster really holds.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { startEtcdCluster, type EtcdCluster } from '../../support/etcd.js'
import { Recorder, wayfindValue } from './helpers.js'

let cluster: EtcdCluster

beforeAll(async () => {
  cluster = await startEtcdCluster(3)
})

afterAll(async () => {
  await cluster.remove()
})

it('caches converge to the truth after the leader is SIGKILLed under churn', async () => {
  const prefix = '/k1/'
  const writers = new Map<string, Etcd3>(cluster.members.map((m) => [m.name, m.client()]))
  // Four watchers: streams land on random members, so the leader very likely carries some.
  const providers = [0, 1, 2, 3].map(() => EtcdProvider.withHooks({ hosts: cluster.hosts, prefix }, {}))
  const recs = providers.map(() => new Recorder())
  const ac = new AbortController()
  let ops = 0
  let failed = 0
  const churn$ = { on: true }
  // Puts and deletes over 12 keys, through whichever member is alive; failures are expected
  // around the kill (the truth is read at the end, not assumed).
  const churn = (async () => {
    for (let i = 0; churn$.on; i++) {
      const alive = cluster.members.filter((m) => m.running)
      const w = writers.get(alive[i % alive.length]!.name)!
      const k = `${prefix}svc/i${String(i % 12)}`
      try {
        if (i % 5 === 4) await w.delete().key(k)
        else await w.put(k).value(wayfindValue(`i${String(i % 12)}`, 9000 + i))
        ops++
      } catch {
        failed++
      }
    }
  })()
  try {
    providers.forEach((p, n) => { p.watch('svc', recs[n]!, { signal: ac.signal }) })
    await Promise.all(recs.map((r) => r.until((s) => s.instances.length >= 5, 15_000)))
    const leader = await cluster.leader()
    const opsBefore = ops
    await leader.kill('SIGKILL')
    // Keep churning until the survivors have accepted more writes (a new leader exists).
    await Promise.all(recs.map((r) => r.until(() => ops > opsBefore + 50, 20_000, 'writes after the kill')))
    churn$.on = false
    await churn
    const survivor = cluster.members.find((m) => m.running)!
    const truth = await writers.get(survivor.name)!.getAll().prefix(`${prefix}svc/`).strings()
    const want = Object.entries(truth)
      .map(([key, v]) => `${key.slice(`${prefix}svc/`.length)}:${String((JSON.parse(v) as { port: number }).port)}`)
      .sort()
    expect(want.length).toBeGreaterThan(0)
    for (const r of recs) {
      const got = await r.until(
        (s) => s.instances.map((i) => `${i.id}:${String(i.port)}`).sort().join(',') === want.join(','),
        20_000,
        'the cache to equal the cluster',
      )
      expect(got.instances.length).toBe(want.length)
    }
    const interrupted = recs.filter((r) => r.errors.length > 0).length
    process.stdout.write(`[measure] cluster churn: ${String(ops)} ops applied, ${String(failed)} failed around the leader kill; ${String(interrupted)}/4 watchers lost their stream\n`)
  } finally {
    churn$.on = false
    await churn
    ac.abort()
    await Promise.all(providers.map((p) => p.close()))
  }
})
