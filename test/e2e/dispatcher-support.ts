/**
 * Support for the dispatcher e2e tests: a small in-memory ServiceDirectory (the contract the
 * dispatcher codes against) and node:http instances on port 0 with controllable behaviour.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { DefaultLoadTracker } from '../../src/balancer/load-tracker.js'
import { roundRobin } from '../../src/balancer/round-robin.js'
import { EMPTY_PICKER, type Picker, type Strategy } from '../../src/balancer/strategy.js'
import { systemClock, type Clock } from '../../src/core/clock.js'
import type { ServiceDirectory } from '../../src/core/directory.js'
import { ResolveTimeoutError } from '../../src/errors.js'
import type { ChangeEvent } from '../../src/events.js'
import { createInstance, diffInstances, type Instance } from '../../src/instance.js'

export class FakeDirectory implements ServiceDirectory {
  readonly load: DefaultLoadTracker
  readonly clock: Clock
  readonly resolveTimeoutMs: number
  readonly #strategy: Strategy
  readonly #random: () => number
  readonly #pickers = new Map<string, Picker>()
  readonly #sets = new Map<string, Instance[]>()
  readonly #listeners = new Set<(e: ChangeEvent) => void>()
  readonly #waiters = new Set<{ service: string; resolve: (p: Picker) => void }>()

  constructor(
    opts: {
      strategy?: Strategy
      resolveTimeoutMs?: number
      clock?: Clock
      random?: () => number
    } = {},
  ) {
    this.clock = opts.clock ?? systemClock
    this.load = new DefaultLoadTracker({ clock: this.clock })
    this.resolveTimeoutMs = opts.resolveTimeoutMs ?? 2_000
    this.#strategy = opts.strategy ?? roundRobin()
    this.#random = opts.random ?? (() => 0)
  }

  /** Replaces the instance set of `service`, swaps the picker, then announces the change. */
  set(service: string, instances: Instance[]): void {
    const before = this.#sets.get(service) ?? []
    this.#sets.set(service, instances)
    const prev = this.#pickers.get(service)
    const picker =
      instances.length === 0
        ? EMPTY_PICKER
        : this.#strategy.createPicker(instances, {
            service,
            load: this.load,
            random: this.#random,
            clock: this.clock,
            previous: prev === EMPTY_PICKER ? undefined : prev,
          })
    this.#pickers.set(service, picker)
    const diff = diffInstances(before, instances)
    for (const l of this.#listeners) l({ service, instances, ...diff })
    if (instances.length > 0)
      for (const w of [...this.#waiters])
        if (w.service === service) {
          this.#waiters.delete(w)
          w.resolve(picker)
        }
  }

  picker(service: string): Picker {
    return this.#pickers.get(service) ?? EMPTY_PICKER
  }

  waitForPicker(
    service: string,
    options: { timeoutMs: number; signal?: AbortSignal | undefined },
  ): Promise<Picker> {
    const current = this.#pickers.get(service)
    if (current !== undefined && current.instances.length > 0) return Promise.resolve(current)
    return new Promise((resolve, reject) => {
      const w = {
        service,
        resolve: (p: Picker) => {
          clear()
          resolve(p)
        },
      }
      const timer = setTimeout(() => {
        clear()
        reject(new ResolveTimeoutError(service, options.timeoutMs))
      }, options.timeoutMs)
      const onAbort = (): void => {
        clear()
        reject(options.signal?.reason as Error)
      }
      const clear = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(w)
        options.signal?.removeEventListener('abort', onAbort)
      }
      if (options.signal?.aborted === true) {
        onAbort()
        return
      }
      options.signal?.addEventListener('abort', onAbort)
      this.#waiters.add(w)
    })
  }

  onChange(listener: (e: ChangeEvent) => void): () => void {
    this.#listeners.add(listener)
    return () => {
      this.#listeners.delete(listener)
    }
  }
}

/** What a test server saw. */
export interface Seen {
  readonly method: string
  readonly url: string
  readonly host: string | undefined
  readonly body: string
}

type Behaviour = (req: IncomingMessage, res: ServerResponse, body: string) => void

/** A node:http instance on a free loopback port. */
export class TestServer {
  readonly server: Server
  readonly seen: Seen[] = []
  readonly id: string
  behaviour: Behaviour
  port = 0

  constructor(id: string, behaviour?: Behaviour) {
    this.id = id
    this.behaviour =
      behaviour ??
      ((_req, res) => {
        res.end(this.id)
      })
    this.server = createServer((req, res) => {
      const chunks: Buffer[] = []
      req.on('data', (c: Buffer) => chunks.push(c))
      req.on('end', () => {
        const body = Buffer.concat(chunks).toString()
        this.seen.push({
          method: req.method ?? '',
          url: req.url ?? '',
          host: req.headers.host,
          body,
        })
        this.behaviour(req, res, body)
      })
    })
  }

  async listen(): Promise<this> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve))
    this.port = (this.server.address() as AddressInfo).port
    return this
  }

  instance(service = 'payments', weight = 1): Instance {
    return createInstance({
      id: this.id,
      key: `${service}/${this.id}`,
      service,
      host: '127.0.0.1',
      port: this.port,
      weight,
    })
  }

  /** Stops listening and cuts every open connection at once (a crash, seen from outside). */
  async kill(): Promise<void> {
    const closed = new Promise<void>((resolve) =>
      this.server.close(() => {
        resolve()
      }),
    )
    this.server.closeAllConnections()
    await closed
  }
}

/** An instance on a loopback port where nothing listens (connect is refused). */
export async function deadInstance(service = 'payments', id = 'dead'): Promise<Instance> {
  const s = await new TestServer(id).listen()
  const inst = s.instance(service)
  await s.kill()
  return inst
}

/** A one-shot gate: `wait()` resolves once `open()` was called. */
export function gate(): { wait: Promise<void>; open: () => void } {
  let open!: () => void
  const wait = new Promise<void>((r) => {
    open = r
  })
  return { wait, open }
}
