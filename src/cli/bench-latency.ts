/**
 * `wayfind bench latency`: measures, on the user's own registry, how long a registration change
 * takes to reach a wayfind client as a `change` event. A temporary instance is registered and
 * deregistered N times by one client; a second client (its own connection) watches. Latency is
 * from just before the write was sent to the watcher's event.
 *
 * Cleanup: the temporary instance is deregistered at the end, on error and on SIGINT/SIGTERM.
 * If the process is killed outright, the registry expires it anyway: on Consul through a TTL
 * check with DeregisterCriticalServiceAfter (1 min, Consul's minimum), on etcd through the lease.
 */
import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { parseArgs } from 'node:util'
import { createWayfind, type Wayfind } from '../client.js'
import type { ChangeEvent } from '../events.js'
import type { Registration, RegistrationHandle } from '../registration/contract.js'
import type { CommandIo } from './io.js'
import { REGISTRY_HELP, REGISTRY_OPTIONS, chooseRegistry } from './registry-args.js'
import { summarize } from './stats.js'
import { EXIT, IDLE_TTL_MS, UsageError, parseCount, parseDurationMs } from './usage.js'

export const BENCH_LATENCY_HELP = `Usage: wayfind bench latency [registry] [--count 20] [--interval 2s] [--json]

Registers a temporary instance of a temporary service, then deregisters and registers it
again --count times; a second client watches and reports how long each change took to
arrive as a wayfind change event (p50, p90, p99, max). Progress goes to stderr.
The instance is removed at the end, on errors and on Ctrl-C (and expires by itself if
the process is killed: Consul TTL check with a 1 min critical deregistration, etcd lease).

Options:
  --count N           changes to measure, 1..10000 (default 20)
  --interval DURATION pause between changes, with a unit: 500ms, 2s (default 2s on
                      Consul, 200ms on etcd). The watching client runs without
                      wayfind's churn guard, so the numbers are the registry's.
  --service NAME      temporary service name (default wayfind-bench-<random>)
  --timeout DURATION  longest wait for one change to arrive (default 15s)
  --json              print the result as JSON
  -h, --help          this help

${REGISTRY_HELP}

Exit codes: 0 done, 1 runtime failure (registry error, a change never arrived), 2 usage
error, 130/143 interrupted (after cleaning up).`

interface Flip {
  readonly kind: 'register' | 'deregister'
  readonly latencyMs: number
  /** How long the write itself took (request round trip, plus the registrar's verification). */
  readonly writeMs: number
}

const now = (): number => performance.timeOrigin + performance.now()

export async function benchLatencyCommand(argv: readonly string[], io: CommandIo): Promise<number> {
  const { values, positionals } = parseArgs({
    args: [...argv],
    options: {
      ...REGISTRY_OPTIONS,
      count: { type: 'string', default: '20' },
      interval: { type: 'string' },
      service: { type: 'string' },
      timeout: { type: 'string', default: '15s' },
      json: { type: 'boolean', default: false },
      help: { type: 'boolean', short: 'h' },
    },
    allowPositionals: true,
    strict: true,
  })
  if (values.help === true) {
    io.out(`${BENCH_LATENCY_HELP}\n`)
    return EXIT.OK
  }
  if (positionals.length > 0)
    throw new UsageError(`bench latency: unexpected argument ${JSON.stringify(positionals[0])}`)
  const count = parseCount('count', values.count, 1, 10_000)
  const timeoutMs = parseDurationMs('timeout', values.timeout)
  const registry = chooseRegistry(values, io.env)
  const intervalMs = parseDurationMs(
    'interval',
    values.interval ?? (registry.kind === 'consul' ? '2s' : '200ms'),
  )
  const suffix = randomBytes(4).toString('hex')
  const service = values.service ?? `wayfind-bench-${suffix}`
  const registration: Registration = {
    name: service,
    id: `${service}-${process.pid}-${suffix}`,
    address: '127.0.0.1',
    // Nothing listens there: the instance is never called, only listed.
    port: 9,
    meta: { purpose: 'wayfind bench latency', host: hostname() },
    check:
      registry.kind === 'consul'
        ? { ttlMs: 30_000, deregisterCriticalAfterMs: 60_000 }
        : { ttlMs: 10_000 },
  }

  const writer = createWayfind({ registry: registry.create() })
  const watcher = createWayfind({
    registry: registry.create({ unpaced: true }),
    idleTtlMs: IDLE_TTL_MS,
  })
  const progress = progressBar(io, count)
  let handle: RegistrationHandle | undefined
  let registering: Promise<RegistrationHandle> | undefined
  const flips: Flip[] = []
  let failure: Error | undefined
  const errors: string[] = []
  watcher.events.on('error', (e) => {
    if (e.service === service) errors.push(`${e.error.code}: ${e.error.message}`)
  })
  writer.events.on('error', (e) => {
    errors.push(`${e.error.code}: ${e.error.message}`)
  })

  if (!values.json)
    io.err(`wayfind bench latency: ${count} changes of ${service} on ${registry.where}\n`)
  try {
    watcher.instances(service)
    // One unmeasured register + deregister first: connections, watch and caches warm up.
    for (let step = -2; step < count && !io.signal.aborted; step++) {
      const kind = handle === undefined ? 'register' : 'deregister'
      const arrived = waitForChange(
        watcher,
        service,
        registration.id ?? '',
        kind === 'register' ? 'added' : 'removed',
        timeoutMs,
        io.signal,
      )
      const t0 = now()
      if (kind === 'register') {
        registering = writer.register(registration)
        handle = await registering
        registering = undefined
      } else {
        const h = handle
        handle = undefined
        await h?.deregister()
      }
      const writeMs = now() - t0
      const seenAt = await arrived
      if (seenAt === 'aborted') break
      if (seenAt === 'timeout')
        throw new Error(
          `the ${kind} of ${registration.id ?? ''} did not arrive as a change event within ${timeoutMs} ms${errors.length > 0 ? ` (last error: ${errors[errors.length - 1] ?? ''})` : ''}`,
        )
      if (step >= 0) {
        flips.push({ kind, latencyMs: seenAt - t0, writeMs })
        progress.update(flips.length)
      }
      if (step < count - 1) await pause(intervalMs, io.signal)
    }
  } catch (err) {
    failure = err instanceof Error ? err : new Error(String(err))
  } finally {
    progress.done()
    // Leave nothing behind: a registration still being made is awaited, then removed.
    if (registering !== undefined) handle = await registering.catch(() => undefined)
    if (handle !== undefined) {
      await handle.deregister({ timeoutMs: 5_000 }).catch((err: unknown) => {
        io.err(
          `wayfind: could not deregister ${registration.id ?? ''}: ${err instanceof Error ? err.message : String(err)}; it expires by itself\n`,
        )
      })
    }
    await Promise.allSettled([writer.close(), watcher.close()])
  }

  const all = summarize(flips.map((f) => f.latencyMs))
  const byKind = (k: Flip['kind']): ReturnType<typeof summarize> =>
    summarize(flips.filter((f) => f.kind === k).map((f) => f.latencyMs))
  const result = {
    registry: registry.where,
    service,
    changes: flips.length,
    latencyMs: all,
    registerLatencyMs: byKind('register'),
    deregisterLatencyMs: byKind('deregister'),
    writeMs: summarize(flips.map((f) => f.writeMs)),
    interrupted: io.signal.aborted,
  }
  if (flips.length > 0 || values.json)
    io.out(values.json ? `${JSON.stringify(result)}\n` : report(result))
  if (io.signal.aborted) {
    io.err(
      `wayfind: interrupted after ${flips.length} change(s); the temporary instance was removed\n`,
    )
    return io.signal.reason === 'SIGTERM' ? EXIT.SIGTERM : EXIT.SIGINT
  }
  if (failure !== undefined) {
    io.err(`wayfind: ${failure.message}\n`)
    return EXIT.FAILURE
  }
  return EXIT.OK
}

function report(r: {
  registry: string
  changes: number
  latencyMs: ReturnType<typeof summarize>
  registerLatencyMs: ReturnType<typeof summarize>
  deregisterLatencyMs: ReturnType<typeof summarize>
  writeMs: ReturnType<typeof summarize>
}): string {
  const f = (v: number): string => (Number.isFinite(v) ? v.toFixed(2) : '-')
  const row = (label: string, s: ReturnType<typeof summarize>): string =>
    `${label.padEnd(26)}${String(s.count).padStart(6)}${f(s.p50).padStart(10)}${f(s.p90).padStart(10)}${f(s.p99).padStart(10)}${f(s.max).padStart(10)}`
  return [
    `change → event latency on ${r.registry}, in ms`,
    `${''.padEnd(26)}${'n'.padStart(6)}${'p50'.padStart(10)}${'p90'.padStart(10)}${'p99'.padStart(10)}${'max'.padStart(10)}`,
    row('all changes', r.latencyMs),
    row('register → added', r.registerLatencyMs),
    row('deregister → removed', r.deregisterLatencyMs),
    row('write call (for scale)', r.writeMs),
    '',
  ].join('\n')
}

/** Resolves with the wall-clock time of the change event, 'timeout' or 'aborted'. */
function waitForChange(
  wf: Wayfind,
  service: string,
  id: string,
  field: 'added' | 'removed',
  timeoutMs: number,
  signal: AbortSignal,
): Promise<number | 'timeout' | 'aborted'> {
  return new Promise((resolve) => {
    const finish = (v: number | 'timeout' | 'aborted'): void => {
      off()
      clearTimeout(timer)
      signal.removeEventListener('abort', onAbort)
      resolve(v)
    }
    const off = wf.events.on('change', (e: ChangeEvent) => {
      if (e.service === service && e[field].some((i) => i.id === id)) finish(now())
    })
    const timer = setTimeout(() => {
      finish('timeout')
    }, timeoutMs)
    const onAbort = (): void => {
      finish('aborted')
    }
    if (signal.aborted) finish('aborted')
    else signal.addEventListener('abort', onAbort, { once: true })
  })
}

function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) {
      resolve()
      return
    }
    const done = (): void => {
      clearTimeout(timer)
      signal.removeEventListener('abort', done)
      resolve()
    }
    const timer = setTimeout(done, ms)
    signal.addEventListener('abort', done, { once: true })
  })
}

/** `[#####.....] 12/20` on stderr: redrawn on a TTY, a line per 10 % otherwise. */
function progressBar(io: CommandIo, total: number): { update(n: number): void; done(): void } {
  let lastTenth = -1
  let drawn = false
  return {
    update(n) {
      const width = 30
      const filled = Math.round((n / total) * width)
      if (io.errIsTty) {
        io.err(`\r[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${n}/${total}`)
        drawn = true
      } else {
        const tenth = Math.floor((n / total) * 10)
        if (tenth !== lastTenth) {
          lastTenth = tenth
          io.err(`progress ${n}/${total}\n`)
        }
      }
    },
    done() {
      if (drawn) io.err('\n')
      drawn = false
    },
  }
}
