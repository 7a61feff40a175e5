/**
 * A 3-member cluster whose leader is SIGKILLed while instances churn: every watcher's cache
 * converges to what the cluster really holds.
 */
import type { Etcd3 } from 'etcd3'
import { afterAll, beforeAll, expect, it } from 'vitest'
import { ErrorCode } from '../../../src/errors.js'
import { EtcdProvider } from '../../../src/registry/etcd/provider.js'
import { startEtcdCluster, type EtcdCluster } from '../../support/etcd.js'
import { hasIds, putEventually, Recorder, wayfindValue } from './helpers.js'

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
  const providers = [0, 1, 2, 3].map(() =>
    EtcdProvider.withHooks({ hosts: cluster.hosts, prefix }, {}),
  )
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
    providers.forEach((p, n) => {
      p.watch('svc', recs[n]!, { signal: ac.signal })
    })
    await Promise.all(recs.map((r) => r.until((s) => s.instances.length >= 5, 15_000)))
    const leader = await cluster.leader()
    const opsBefore = ops
    await leader.kill('SIGKILL')
    // Keep churning until the survivors have accepted more writes (a new leader exists).
    await Promise.all(
      recs.map((r) => r.until(() => ops > opsBefore + 50, 20_000, 'writes after the kill')),
    )
    churn$.on = false
    await churn
    const survivor = cluster.members.find((m) => m.running)!
    const truth = await writers.get(survivor.name)!.getAll().prefix(`${prefix}svc/`).strings()
    const want = Object.entries(truth)
      .map(
        ([key, v]) =>
          `${key.slice(`${prefix}svc/`.length)}:${String((JSON.parse(v) as { port: number }).port)}`,
      )
      .sort()
    expect(want.length).toBeGreaterThan(0)
    for (const r of recs) {
      const got = await r.until(
        (s) =>
          s.instances
            .map((i) => `${i.id}:${String(i.port)}`)
            .sort()
            .join(',') === want.join(','),
        20_000,
        'the cache to equal the cluster',
      )
      expect(got.instances.length).toBe(want.length)
    }
    const interrupted = recs.filter((r) => r.errors.length > 0).length
    process.stdout.write(
      `[measure] cluster churn: ${String(ops)} ops applied, ${String(failed)} failed around the leader kill; ${String(interrupted)}/4 watchers lost their stream\n`,
    )
  } finally {
    churn$.on = false
    await churn
    ac.abort()
    await Promise.all(providers.map((p) => p.close()))
  }
})

it('a member that lost its leader cancels our watch (require-leader) instead of going quiet', async () => {
  // Bring back whatever the previous test killed.
  for (const m of cluster.members) if (!m.running) await m.restart()
  const prefix = '/k2/'
  const [lonely, a, b] = cluster.members as [
    (typeof cluster.members)[0],
    (typeof cluster.members)[0],
    (typeof cluster.members)[0],
  ]
  const writer = a.client()
  await putEventually(writer, `${prefix}svc/x`, wayfindValue('x', 9001))
  // Talks to one member only: when that member loses quorum, only the server can tell us.
  const provider = EtcdProvider.withHooks({ hosts: lonely.host, prefix }, {})
  const rec = new Recorder()
  const ac = new AbortController()
  try {
    provider.watch('svc', rec, { signal: ac.signal })
    await rec.until(hasIds('x'))
    const errorsBefore = rec.errors.length
    const t0 = performance.now()
    await Promise.all([a.kill('SIGKILL'), b.kill('SIGKILL')])
    const err = await rec.untilError(
      (e) => e.code === ErrorCode.REGISTRY_UNAVAILABLE,
      15_000,
      errorsBefore,
    )
    process.stdout.write(
      `[measure] member without leader: watch cancelled after ${(performance.now() - t0).toFixed(0)} ms (${err.message.slice(0, 80)})\n`,
    )
    await Promise.all([a.restart(), b.restart()])
    await putEventually(writer, `${prefix}svc/y`, wayfindValue('y', 9002))
    await rec.until(hasIds('x', 'y'), 20_000, 'the watch to resume once quorum is back')
  } finally {
    ac.abort()
    await provider.close()
  }
})
