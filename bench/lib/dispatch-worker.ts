/**
 * Measuring process for bench/dispatch.ts: builds every variant against the servers of
 * dispatch-server.ts in a random order, then runs short closed-loop rounds of each, interleaved
 * in a fresh random order per round, and returns the raw samples. A fresh process per run: JIT and heap layout differ between
 * processes by a few per cent, so the parent pools several of them rather than trusting one.
 *
 *   argv[2]: JSON array of server ports (the first one serves the one-instance variants)
 *   argv[3]: 'ladder' adds the two reference rows of --ladder (see ReferenceBalancer)
 */
import { BalancedPool, Dispatcher, Pool } from 'undici'
import { leastLoaded } from '../../src/balancer/least-loaded.js'
import { roundRobin } from '../../src/balancer/round-robin.js'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import { createInstance } from '../../src/instance.js'
import { sendReady, serveRequests, type Message } from './child.js'
import { StaticDirectory } from './dispatch-directory.js'
import { CONNECTIONS, WINDOW, type Sample } from './dispatch-shape.js'
import { shuffled } from './stats.js'

/**
 * Reference rows for `--ladder`, not products: round-robin over the same four Pools with no
 * bookkeeping at all, and with the least a balancer that counts in-flight requests must do (a
 * handler wrapper that counts at dispatch and once at the end). They bound what any wayfind-like
 * design can reach against BalancedPool in this benchmark: wayfind pays for its wrapper's retry,
 * abort, outcome and latency logic on top of the second row.
 */
class ReferenceBalancer extends Dispatcher {
  readonly #pools: Pool[]
  readonly #inflight: Int32Array
  readonly #count: boolean
  #next = 0

  constructor(origins: readonly string[], connections: number, count: boolean) {
    super()
    this.#pools = origins.map((o) => new Pool(o, { connections, pipelining: 1 }))
    this.#inflight = new Int32Array(origins.length)
    this.#count = count
  }

  override dispatch(
    opts: Dispatcher.DispatchOptions,
    handler: Dispatcher.DispatchHandler,
  ): boolean {
    const i = this.#next
    this.#next = i + 1 === this.#pools.length ? 0 : i + 1
    const pool = this.#pools[i] as Pool
    if (!this.#count) return pool.dispatch(opts, handler)
    this.#inflight[i] = (this.#inflight[i] ?? 0) + 1
    return pool.dispatch(opts, new CountingHandler(handler, this.#inflight, i))
  }

  override close(): Promise<void> {
    return Promise.all(this.#pools.map((p) => p.close())).then(() => undefined)
  }

  override destroy(): Promise<void> {
    return Promise.all(this.#pools.map((p) => p.destroy())).then(() => undefined)
  }
}

/* eslint-disable @typescript-eslint/no-deprecated -- mirrors the legacy handler, as wayfind does */
class CountingHandler implements Dispatcher.DispatchHandler {
  readonly #handler: Dispatcher.DispatchHandler
  readonly #inflight: Int32Array
  readonly #slot: number
  #open = true

  constructor(handler: Dispatcher.DispatchHandler, inflight: Int32Array, slot: number) {
    this.#handler = handler
    this.#inflight = inflight
    this.#slot = slot
  }

  #end(): void {
    if (!this.#open) return
    this.#open = false
    this.#inflight[this.#slot] = (this.#inflight[this.#slot] ?? 1) - 1
  }

  onConnect(abort: (err?: Error) => void, context?: unknown): void {
    ;(this.#handler.onConnect as ((a: (e?: Error) => void, c?: unknown) => void) | undefined)?.call(
      this.#handler,
      abort,
      context,
    )
  }

  onResponseStarted(): void {
    this.#handler.onResponseStarted?.()
  }

  onHeaders(status: number, raw: Buffer[], resume: () => void, text: string): boolean {
    return this.#handler.onHeaders?.(status, raw, resume, text) ?? true
  }

  onData(chunk: Buffer): boolean {
    return this.#handler.onData?.(chunk) ?? true
  }

  onComplete(trailers: string[] | null): void {
    this.#end()
    this.#handler.onComplete?.(trailers)
  }

  onError(err: Error): void {
    this.#end()
    this.#handler.onError?.(err)
  }
}
/* eslint-enable @typescript-eslint/no-deprecated */

interface Variant {
  readonly name: string
  readonly dispatcher: Dispatcher
  readonly origin: string
}

/** Closed loop: `requests` GETs with at most WINDOW in flight, each body dumped. */
async function runLoop(v: Variant, requests: number): Promise<Sample> {
  let started = 0
  const cpu0 = process.cpuUsage()
  const t0 = performance.now()
  const worker = async (): Promise<void> => {
    while (started < requests) {
      started++
      const res = await v.dispatcher.request({ origin: v.origin, path: '/', method: 'GET' })
      await res.body.dump()
    }
  }
  await Promise.all(Array.from({ length: WINDOW }, worker))
  const wallMs = performance.now() - t0
  const cpu = process.cpuUsage(cpu0)
  return { reqPerS: (requests / wallMs) * 1000, cpuUsPerReq: (cpu.user + cpu.system) / requests }
}

/**
 * The variants, built (and warmed, so connected) in a random order per process: the order
 * itself moved a variant's ratio by up to 3 % whatever its strategy (one in-flight P2C
 * dispatcher measured 1.011× BalancedPool built second and 0.976× built first).
 */
function variants(ports: readonly number[], ladder: boolean): Variant[] {
  const origins = ports.map((p) => `http://127.0.0.1:${p}`)
  const four = ports.map((port, i) =>
    createInstance({ id: `i${i}`, key: `four/i${i}`, service: 'four', host: '127.0.0.1', port }),
  )
  const one = [
    createInstance({
      id: 'i0',
      key: 'one/i0',
      service: 'one',
      host: '127.0.0.1',
      port: ports[0] as number,
    }),
  ]
  // Each wayfind variant has its own directory and tracker: no shared load state between rows.
  const build: (() => Variant)[] = [
    () => ({
      name: 'undici Pool (baseline)',
      dispatcher: new Pool(origins[0] as string, { connections: CONNECTIONS, pipelining: 1 }),
      origin: origins[0] as string,
    }),
    () => ({
      name: 'wayfind, 1 instance',
      dispatcher: new WayfindDispatcher(new StaticDirectory(leastLoaded(), { one }), {
        connections: CONNECTIONS,
      }),
      origin: 'http://one',
    }),
    () => ({
      name: 'undici BalancedPool, 4',
      dispatcher: new BalancedPool(origins, { connections: CONNECTIONS / 4, pipelining: 1 }),
      origin: origins[0] as string,
    }),
    () => ({
      name: 'wayfind, 4, least-loaded',
      dispatcher: new WayfindDispatcher(new StaticDirectory(leastLoaded(), { four }), {
        connections: CONNECTIONS / 4,
      }),
      origin: 'http://four',
    }),
    () => ({
      name: 'wayfind, 4, round-robin',
      dispatcher: new WayfindDispatcher(new StaticDirectory(roundRobin(), { four }), {
        connections: CONNECTIONS / 4,
      }),
      origin: 'http://four',
    }),
  ]
  if (ladder)
    build.push(
      () => ({
        name: 'ref: bare round-robin, 4 Pools',
        dispatcher: new ReferenceBalancer(origins, CONNECTIONS / 4, false),
        origin: origins[0] as string,
      }),
      () => ({
        name: 'ref: + in-flight counting wrapper',
        dispatcher: new ReferenceBalancer(origins, CONNECTIONS / 4, true),
        origin: origins[0] as string,
      }),
    )
  return shuffled(build).map((make) => make())
}

const list = variants(JSON.parse(process.argv[2] ?? '[]') as number[], process.argv[3] === 'ladder')

serveRequests(
  async (msg: Message) => {
    if (msg.type !== 'run') throw new Error(`unknown request ${String(msg.type)}`)
    const rounds = Number(msg.rounds)
    const requests = Number(msg.requests)
    // Warm-up: connections open, JIT settled (in the random build order).
    for (const v of list) await runLoop(v, 2_000)
    const samples: Record<string, Sample[]> = Object.fromEntries(list.map((v) => [v.name, []]))
    for (let r = 0; r < rounds; r++)
      // A fresh random order each round. A rotation is not enough: it keeps every variant
      // behind the same neighbour for the whole run, so a neighbour's after-effects (its
      // garbage, its sockets' state) bias one row's ratio the same way in every round.
      for (const v of shuffled(list)) samples[v.name]?.push(await runLoop(v, requests))
    return { samples }
  },
  async () => {
    await Promise.allSettled(list.map((v) => v.dispatcher.close()))
  },
)
sendReady({ variants: list.map((v) => v.name) })
