/**
 * Network-free cost of the dispatcher layer
 * (docs/design/dispatch.md#measuring-dispatcher-overhead, item 6): a stub pool that answers every
 * request synchronously (start, 200 with two headers, one chunk, end) in the caller's
 * handler style, so the difference between "stub alone" and "wayfind over the stub" is exactly
 * what the dispatcher adds per request: route, pick, options copy, Host header, handler wrapper,
 * in-flight and latency bookkeeping.
 */
import { Dispatcher } from 'undici'
import { leastLoaded } from '../../src/balancer/least-loaded.js'
import { roundRobin } from '../../src/balancer/round-robin.js'
import { WayfindDispatcher } from '../../src/dispatcher/dispatcher.js'
import { createInstance } from '../../src/instance.js'
import { StaticDirectory } from './dispatch-directory.js'

const RAW = [
  Buffer.from('content-type'),
  Buffer.from('text/plain'),
  Buffer.from('content-length'),
  Buffer.from('2'),
]
const OBJ = { 'content-type': 'text/plain', 'content-length': '2' }
const CHUNK = Buffer.from('ok')
const noop = (): void => undefined
const CONTROLLER: Dispatcher.DispatchController = {
  aborted: false,
  paused: false,
  reason: null,
  abort: noop,
  pause: noop,
  resume: noop,
}

/* eslint-disable @typescript-eslint/no-deprecated -- the stub plays undici's side of both handler APIs */
class StubPool extends Dispatcher {
  override dispatch(_opts: Dispatcher.DispatchOptions, h: Dispatcher.DispatchHandler): boolean {
    if (typeof h.onRequestStart === 'function') {
      h.onRequestStart(CONTROLLER, {})
      h.onResponseStart?.(CONTROLLER, 200, OBJ, 'OK')
      h.onResponseData?.(CONTROLLER, CHUNK)
      h.onResponseEnd?.(CONTROLLER, {})
    } else {
      h.onConnect?.(noop)
      h.onHeaders?.(200, RAW, noop, 'OK')
      h.onData?.(CHUNK)
      h.onComplete?.(null)
    }
    return true
  }
  override close(): Promise<void> {
    return Promise.resolve()
  }
  override destroy(): Promise<void> {
    return Promise.resolve()
  }
}

const legacyHandler: Dispatcher.DispatchHandler = {
  onConnect: noop,
  onHeaders: () => true,
  onData: () => true,
  onComplete: noop,
  onError: (e: Error) => {
    throw e
  },
}
/* eslint-enable @typescript-eslint/no-deprecated */
const modernHandler: Dispatcher.DispatchHandler = {
  onRequestStart: noop,
  onResponseStart: noop,
  onResponseData: noop,
  onResponseEnd: noop,
  onResponseError: (_c, e) => {
    throw e
  },
}

export interface StubCase {
  readonly name: string
  readonly run: (n: number) => number
}

function timed(
  d: Dispatcher,
  origin: string,
  handler: Dispatcher.DispatchHandler,
): (n: number) => number {
  const opts: Dispatcher.DispatchOptions = { origin, path: '/', method: 'GET' }
  return (n) => {
    const t0 = process.hrtime.bigint()
    for (let i = 0; i < n; i++) d.dispatch(opts, handler)
    return Number(process.hrtime.bigint() - t0) / n
  }
}

/** The cases, sharing one stub; every wayfind case uses its own directory and tracker. */
export function stubCases(): StubCase[] {
  const instances = (service: string, n: number) =>
    Array.from({ length: n }, (_, i) =>
      createInstance({
        id: `i${i}`,
        key: `${service}/i${i}`,
        service,
        host: '10.0.0.1',
        port: 8000 + i,
      }),
    )
  const stub = new StubPool()
  const ll = new WayfindDispatcher(
    new StaticDirectory(leastLoaded(), { one: instances('one', 1), four: instances('four', 4) }),
    { poolFactory: () => new StubPool() },
  )
  const rr = new WayfindDispatcher(
    new StaticDirectory(roundRobin(), { four: instances('four', 4) }),
    { poolFactory: () => new StubPool() },
  )
  return [
    {
      name: 'stub pool alone, legacy handler',
      run: timed(stub, 'http://10.0.0.1:8000', legacyHandler),
    },
    { name: 'wayfind over stub, 1 instance, legacy', run: timed(ll, 'http://one', legacyHandler) },
    {
      name: 'wayfind over stub, 4, least-loaded, legacy',
      run: timed(ll, 'http://four', legacyHandler),
    },
    {
      name: 'wayfind over stub, 4, round-robin, legacy',
      run: timed(rr, 'http://four', legacyHandler),
    },
    {
      name: 'stub pool alone, new-API handler',
      run: timed(stub, 'http://10.0.0.1:8000', modernHandler),
    },
    {
      name: 'wayfind over stub, 4, least-loaded, new API',
      run: timed(ll, 'http://four', modernHandler),
    },
  ]
}
