/**
 * Two processes race to register the same instance id (different ports) on real etcd and on the
 * Consul test server: exactly one wins, the other gets WAYFIND_ERR_REGISTRATION_CONFLICT, and the
 * registry lists the winner's entry.
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startConsulServer, type ConsulTestServer } from '../support/consul-server/index.js'
import { EtcdServer } from '../support/etcd.js'
import { withDeadline } from '../support/wait.js'

const CHILD = fileURLToPath(new URL('./fixtures/register-race-child.ts', import.meta.url))

interface Racer {
  readonly proc: ChildProcess
  next(): Promise<string>
}

function racer(kind: 'etcd' | 'consul', url: string, port: number): Racer {
  const proc = spawn(process.execPath, ['--import', 'tsx', CHILD, kind, url, String(port)], {
    stdio: ['pipe', 'pipe', 'inherit'],
  })
  const lines = createInterface({ input: proc.stdout })[Symbol.asyncIterator]()
  return {
    proc,
    next: async () => {
      const line = await withDeadline(lines.next(), 20_000, `a line from the ${kind} racer`)
      if (line.done === true) throw new Error(`the ${kind} racer ended early`)
      return line.value
    },
  }
}

async function race(
  kind: 'etcd' | 'consul',
  url: string,
): Promise<{
  outcomes: { ok: boolean; code?: string; port?: number }[]
  racers: Racer[]
  end: () => Promise<void>
}> {
  const racers = [racer(kind, url, 7001), racer(kind, url, 7002)]
  for (const r of racers) expect(await r.next()).toBe('ready')
  for (const r of racers) r.proc.stdin!.write('go\n')
  const outcomes = (await Promise.all(racers.map((r) => r.next()))).map(
    (l) => JSON.parse(l) as { ok: boolean; code?: string; port?: number },
  )
  return {
    outcomes,
    racers,
    end: async () => {
      for (const r of racers) r.proc.stdin!.end()
      await withDeadline(
        Promise.all(racers.map((r) => once(r.proc, 'exit'))),
        20_000,
        'the racers to exit',
      )
    },
  }
}

function oneWinner(outcomes: { ok: boolean; code?: string; port?: number }[]): number {
  const winners = outcomes.filter((o) => o.ok)
  const losers = outcomes.filter((o) => !o.ok)
  expect(winners).toHaveLength(1)
  expect(losers).toEqual([{ ok: false, code: 'WAYFIND_ERR_REGISTRATION_CONFLICT' }])
  return winners[0]!.port!
}

describe('two processes racing for one instance id', () => {
  let etcdServer: EtcdServer
  let consulServer: ConsulTestServer

  beforeAll(async () => {
    ;[etcdServer, consulServer] = await Promise.all([EtcdServer.start(), startConsulServer()])
  })

  afterAll(async () => {
    await Promise.all([etcdServer.remove(), consulServer.close()])
  })

  it('on etcd: one registers, the other gets REGISTRATION_CONFLICT', async () => {
    const { outcomes, end } = await race('etcd', etcdServer.host)
    try {
      const port = oneWinner(outcomes)
      const admin = etcdServer.client()
      try {
        const kv = (await admin.get('/race/race/race-1').exec()).kvs[0]
        expect(JSON.parse(kv?.value.toString() ?? '{}')).toMatchObject({ port })
      } finally {
        admin.close()
      }
    } finally {
      await end()
    }
  })

  it('on Consul: one owns the id, the other gets REGISTRATION_CONFLICT (at once, or as registrationLost)', async () => {
    const { outcomes, end, racers } = await race('consul', consulServer.url)
    try {
      // The agent API has no compare-and-set: when both writes land inside one round trip both
      // register() calls resolve, and the overwritten one reports the conflict at its next
      // heartbeat (TTL/3 = 1 s here).
      let port: number
      if (outcomes.every((o) => o.ok)) {
        const lost = await Promise.race(
          racers.map(async (r, i) => ({ i, line: JSON.parse(await r.next()) as unknown })),
        )
        expect(lost.line).toEqual({ lost: 'WAYFIND_ERR_REGISTRATION_CONFLICT' })
        port = outcomes[1 - lost.i]!.port!
      } else port = oneWinner(outcomes)
      const res = await fetch(`${consulServer.url}/v1/agent/service/race-1`)
      expect(await res.json()).toMatchObject({ Port: port })
    } finally {
      await end()
    }
    // The winner deregistered on exit; the loser removed nothing of it before.
    const gone = await fetch(`${consulServer.url}/v1/agent/service/race-1`)
    await gone.text()
    expect(gone.status).toBe(404)
  })
})
