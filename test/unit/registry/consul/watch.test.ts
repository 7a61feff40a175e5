/**
 * The Consul watch loop (src/registry/consul/watch.ts) at its edges, against a scripted node:http
 * agent on port 0: every request is parked until the test answers it, so each case states which
 * request the loop sends next. Time (the churn guard's tokens and "answered early", the retry
 * delays) runs on a fake clock.
 */
import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import type { WayfindError } from '../../../../src/errors.js'
import { ConsulHttp } from '../../../../src/registry/consul/http.js'
import {
  parseConsulOptions,
  type ConsulRegistryOptions,
} from '../../../../src/registry/consul/options.js'
import { SlotGate } from '../../../../src/registry/consul/slot-gate.js'
import { ConsulServiceWatch } from '../../../../src/registry/consul/watch.js'
import type { ServiceSnapshot } from '../../../../src/registry/provider.js'
import type { TimerHandle } from '../../../../src/core/clock.js'
import { FakeClock } from '../../../support/fake-clock.js'
import { withDeadline } from '../../../support/wait.js'

/** One request the loop sent, parked until answered. */
interface Parked {
  readonly index: string | null
  readonly wait: string | null
  readonly stale: boolean
  answer(index: string, body: unknown, status?: number): void
}

/** An agent that answers only what the test tells it to. */
class ScriptedAgent {
  readonly requests: Parked[] = []
  readonly #waiters: { n: number; resolve: (p: Parked) => void }[] = []
  readonly #open = new Set<http.ServerResponse>()
  readonly server = http.createServer((req, res) => {
    const url = new URL(req.url ?? '/', 'http://agent')
    this.#open.add(res)
    const parked: Parked = {
      index: url.searchParams.get('index'),
      wait: url.searchParams.get('wait'),
      stale: url.searchParams.has('stale'),
      answer: (index, body, status = 200) => {
        this.#open.delete(res)
        res.writeHead(status, { 'Content-Type': 'application/json', 'X-Consul-Index': index })
        res.end(typeof body === 'string' ? body : JSON.stringify(body))
      },
    }
    this.requests.push(parked)
    for (const w of [...this.#waiters])
      if (this.requests.length > w.n) {
        this.#waiters.splice(this.#waiters.indexOf(w), 1)
        w.resolve(this.requests[w.n]!)
      }
  })

  get url(): string {
    return `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`
  }

  async start(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
  }

  /** The `n`th request (0-based), once it arrived. */
  request(n: number, what = `request #${n}`): Promise<Parked> {
    const seen = this.requests[n]
    if (seen !== undefined) return Promise.resolve(seen)
    return withDeadline(
      new Promise<Parked>((resolve) => this.#waiters.push({ n, resolve })),
      5_000,
      what,
    )
  }

  async close(): Promise<void> {
    for (const res of this.#open) res.destroy()
    this.server.closeAllConnections()
    await new Promise<void>((resolve) => this.server.close(() => resolve()))
  }
}

/** A health entry as an agent returns it; `port` may be made malformed on purpose. */
function entry(id: string, port: unknown = 7000): Record<string, unknown> {
  return {
    Node: { Node: `node-${id}`, Address: '127.0.0.1', Datacenter: 'dc1', Meta: {} },
    Service: {
      ID: id,
      Service: 'orders',
      Tags: [],
      Address: '',
      Meta: {},
      Port: port,
      Weights: { Passing: 1, Warning: 1 },
    },
    Checks: [{ Node: `node-${id}`, CheckID: 'serfHealth', Status: 'passing', ServiceID: '' }],
  }
}

/** A fake clock that tells when the loop arms a timer on it: the loop is then parked. */
class ObservedClock extends FakeClock {
  readonly armed: number[] = []
  #waiters: (() => void)[] = []

  override setTimeout(fn: () => void, ms: number): TimerHandle {
    const handle = super.setTimeout(fn, ms)
    this.armed.push(ms)
    for (const w of this.#waiters.splice(0)) w()
    return handle
  }

  /** Resolves with the delay of the `count`th timer armed (1-based). */
  timer(count: number): Promise<number> {
    const check = (resolve: (ms: number) => void): void => {
      const ms = this.armed[count - 1]
      if (ms === undefined) this.#waiters.push(() => check(resolve))
      else resolve(ms)
    }
    return withDeadline(new Promise<number>(check), 5_000, `timer #${count}`)
  }
}

interface Started {
  readonly agent: ScriptedAgent
  readonly clock: ObservedClock
  readonly snapshots: ServiceSnapshot[]
  readonly errors: WayfindError[]
  /** Resolves once `count` snapshots arrived. */
  snapshot(count: number): Promise<ServiceSnapshot>
  /** Resolves once `count` errors arrived. */
  error(count: number): Promise<WayfindError>
}

const cleanups: (() => Promise<void> | void)[] = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})

async function start(options: ConsulRegistryOptions = {}): Promise<Started> {
  const agent = new ScriptedAgent()
  await agent.start()
  const resolved = parseConsulOptions({
    url: agent.url,
    waitMs: 10_000,
    random: () => 0,
    ...options,
  })
  const clock = new ObservedClock()
  const httpClient = new ConsulHttp(resolved)
  const gate = new SlotGate(httpClient.watchCapacity, resolved.rotationMs)
  const ac = new AbortController()
  cleanups.push(async () => {
    ac.abort()
    await httpClient.close()
    await agent.close()
  })
  const snapshots: ServiceSnapshot[] = []
  const errors: WayfindError[] = []
  const waiters: (() => void)[] = []
  const poke = (): void => {
    for (const w of waiters.splice(0)) w()
  }
  const until = <T>(ready: () => T | undefined, what: string): Promise<T> =>
    withDeadline(
      new Promise<T>((resolve) => {
        const check = (): void => {
          const v = ready()
          if (v === undefined) waiters.push(check)
          else resolve(v)
        }
        check()
      }),
      5_000,
      what,
    )
  gate.join()
  new ConsulServiceWatch(
    'orders',
    {
      onSnapshot: (s) => {
        snapshots.push(s)
        poke()
      },
      onError: (e) => {
        errors.push(e)
        poke()
      },
    },
    ac.signal,
    { http: httpClient, gate, options: resolved, clock },
  ).start()
  return {
    agent,
    clock,
    snapshots,
    errors,
    snapshot: (count) => until(() => snapshots[count - 1], `snapshot #${count}`),
    error: (count) => until(() => errors[count - 1], `error #${count}`),
  }
}

const ids = (s: ServiceSnapshot): string => s.instances.map((i) => i.id).join(',')

describe('Consul watch loop: index rules', () => {
  it('starts with a plain read, then blocks on the index it got', async () => {
    const w = await start()
    const first = await w.agent.request(0)
    expect(first.index).toBeNull()
    first.answer('10', [entry('a')])
    expect(ids(await w.snapshot(1))).toBe('a')
    const second = await w.agent.request(1)
    expect(second.index).toBe('10')
    expect(second.wait).toBe('10s')
  })

  it('resets to a plain read when the index goes backwards, and delivers the regressed answer', async () => {
    const w = await start()
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('5', [entry('b')])
    expect(ids(await w.snapshot(2))).toBe('b')
    const after = await w.agent.request(2)
    expect(after.index).toBeNull()
    after.answer('6', [entry('b')])
    expect((await w.agent.request(3)).index).toBe('6')
    // The plain read re-based the index without a second (identical) snapshot.
    expect(w.snapshots).toHaveLength(2)
  })

  it('never blocks on 0: an index of 0 becomes 1, reported once', async () => {
    const w = await start()
    ;(await w.agent.request(0)).answer('0', [entry('a')])
    expect(ids(await w.snapshot(1))).toBe('a')
    expect((await w.error(1)).message).toMatch(/X-Consul-Index 0/)
    const next = await w.agent.request(1)
    expect(next.index).toBe('1')
  })

  it('an index that is not a number is never sent back: the next read starts from scratch', async () => {
    const w = await start()
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('12abc', [entry('a'), entry('b')])
    expect(ids(await w.snapshot(2))).toBe('a,b')
    expect((await w.error(1)).message).toMatch(/12abc/)
    expect((await w.agent.request(2)).index).toBeNull()
  })
})

describe('Consul watch loop: churn guard', () => {
  // One token per hour: a token spent is never refilled during the test.
  const options = { rateLimit: { burstCount: 2, refillMs: 3_600_000 } }

  it('only early answers that change nothing spend a token', async () => {
    const w = await start(options)
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    // Late no-op answers (the wait mostly elapsed): free, however many.
    for (let n = 1; n <= 4; n++) {
      const r = await w.agent.request(n)
      w.clock.advance(6_000)
      r.answer('10', [entry('a')])
    }
    // Early answers that change the set under a new index: free as well.
    for (let n = 5; n <= 7; n++) (await w.agent.request(n)).answer(String(10 + n), [entry(`c${n}`)])
    await w.snapshot(4)
    // Early no-op answers: each spends one of the two tokens, then the loop waits for a refill.
    ;(await w.agent.request(8)).answer('17', [entry('c7')])
    ;(await w.agent.request(9)).answer('17', [entry('c7')])
    ;(await w.agent.request(10)).answer('17', [entry('c7')])
    // The loop now waits for a refill on the fake clock, which does not move: it is parked,
    // and nothing was spent before (2 tokens, 3 early no-op answers).
    expect(await w.clock.timer(1)).toBe(3_600_000)
    expect(w.agent.requests).toHaveLength(11)
    w.clock.advance(3_600_000)
    expect((await w.agent.request(11, 'the request after a refill')).index).toBe('17')
  })
})

describe('Consul watch loop: answers not to believe at once', () => {
  it('confirms a sudden empty answer with a plain read, never stale, before delivering it', async () => {
    const w = await start({ consistency: 'stale' })
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('11', [])
    const confirm = await w.agent.request(2)
    expect(confirm.index).toBeNull()
    expect(confirm.stale).toBe(false)
    // The confirming read still lists a: the empty answer was spurious and is never delivered.
    confirm.answer('11', [entry('a')])
    expect((await w.agent.request(3)).index).toBe('11')
    expect(w.snapshots).toHaveLength(1)
  })

  it('delivers the empty set once the confirming read agrees', async () => {
    const w = await start()
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('11', [])
    ;(await w.agent.request(2)).answer('11', [])
    expect((await w.snapshot(2)).instances).toHaveLength(0)
  })

  it('keeps the last good instance when every entry of an answer is malformed', async () => {
    const w = await start()
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('11', [entry('a', 'not-a-port')])
    const error = await w.error(1)
    expect(error.code).toBe('WAYFIND_ERR_MALFORMED_INSTANCE')
    expect((await w.agent.request(2)).index).toBe('11')
    expect(w.snapshots).toHaveLength(1)
    expect(w.snapshots[0]!.instances[0]!.port).toBe(7000)
  })
})

describe('Consul watch loop: errors', () => {
  it('after an error, retries with a plain read once the backoff delay has passed', async () => {
    const w = await start({ backoff: { initialMs: 1_000, maxMs: 8_000 } })
    ;(await w.agent.request(0)).answer('10', [entry('a')])
    await w.snapshot(1)
    ;(await w.agent.request(1)).answer('10', 'No cluster leader', 500)
    expect((await w.error(1)).message).toMatch(/500/)
    // Parked on the first backoff delay (random 0: the full initial ceiling).
    expect(await w.clock.timer(1)).toBe(1_000)
    expect(w.agent.requests).toHaveLength(2)
    w.clock.advance(1_000)
    const plain = await w.agent.request(2, 'the retry')
    expect(plain.index).toBeNull()
    plain.answer('10', [entry('a')])
    expect((await w.agent.request(3)).index).toBe('10')
    expect(w.snapshots).toHaveLength(1)
  })
})
