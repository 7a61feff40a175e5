/**
 * Keeps the running service registered in etcd: the registration JSON under
 * `<prefix><name>/<id>`, attached to a lease kept alive by etcd3.
 *
 * etcd3's 'lost' is a local verdict and it never re-grants (docs/design/etcd.md#leases): on
 * 'lost' we grant a new lease and put the same key/value at once, with backoff, forever. The put
 * moves the key to the new lease, so the old lease's expiry no longer deletes it and watchers see
 * no flap.
 * 'keepaliveFailed' only means "degraded": etcd may still list us. We also watch our own key
 * and put it back if someone deletes it (go-zero does the same).
 */
import type { IKeyValue, Lease } from 'etcd3'
import { linkedController, raceSignal, sleep } from '../../core/abort.js'
import { Backoff } from '../../core/backoff.js'
import { DEFAULT_REGISTER_TIMEOUT_MS, retryWithin } from '../../core/retry.js'
import {
  InvalidOptionError,
  LeaseLostError,
  RegistrationConflictError,
  RegistrationError,
  errorMessage,
} from '../../errors.js'
import type {
  NormalizedRegistration,
  RegisterContext,
  RegistrationSession,
} from '../../registration/contract.js'
import { debug, unavailable, type WayfindEtcd3 } from './client.js'
import { etcd3 } from './load.js'
import { encodeRegistration } from './mapping.js'
import { leaseTtlSeconds, type ParsedEtcdOptions } from './options.js'
import { runRevisionWatch } from './revision-watch.js'
import { callListener } from '../../core/listener-errors.js'

/** Observability hooks for tests. @internal */
export interface RegistrarHooks {
  /** A put of our key succeeded under lease `leaseId` (decimal string). */
  onPut?(leaseId: string): void
  /** An attempt of the first registration failed and will be retried after `delayMs`. */
  onRetry?(error: unknown, delayMs: number): void
}

/** Throws `InvalidOptionError` when `reg` cannot be expressed on etcd. Does no I/O. */
export function checkEtcdRegistration(
  reg: NormalizedRegistration,
  options: ParsedEtcdOptions,
): number {
  if (reg.check?.kind === 'http')
    throw new InvalidOptionError(
      'check.http',
      reg.check.http,
      'etcd has no agent to run HTTP checks: use check: { ttlMs } (the lease TTL; liveness is the lease keepalive).',
    )
  for (const [field, v] of [
    ['name', reg.name],
    ['id', reg.id],
  ] as const)
    if (v === '' || v.includes('/'))
      throw new InvalidOptionError(
        field,
        v,
        `Use a non-empty ${field} without "/" (it is one segment of the etcd key).`,
      )
  const ttlMs = reg.check?.kind === 'ttl' ? reg.check.ttlMs : options.leaseTtlMs
  if (!Number.isFinite(ttlMs) || ttlMs < 1_000)
    throw new InvalidOptionError(
      'check.ttlMs',
      ttlMs,
      'etcd lease TTLs are whole seconds: use at least 1000 ms.',
    )
  return leaseTtlSeconds(ttlMs)
}

/** Registers `reg`; resolves after the first put, rejects with RegistrationError if it fails. */
export async function registerInEtcd(
  client: WayfindEtcd3,
  options: ParsedEtcdOptions,
  reg: NormalizedRegistration,
  ctx: RegisterContext,
  providerSignal: AbortSignal,
  hooks: RegistrarHooks = {},
): Promise<RegistrationSession> {
  const ttlSeconds = checkEtcdRegistration(reg, options)
  const key = `${options.prefix}${reg.name}/${reg.id}`
  const value = encodeRegistration(reg)
  const what = `registering ${reg.name}/${reg.id}`
  const { controller, dispose } = linkedController(ctx.signal, providerSignal)
  const signal = controller.signal
  const backoff = new Backoff(options.backoff)
  let lease: Lease | undefined
  let state: 'registered' | 'degraded' | 'lost' = 'registered'
  // Mutated from event handlers: kept in an object so control-flow narrowing does not lie.
  const run = { running: false, again: false }
  // The reconciliation in progress, if any: deregister() waits for it so that a put landing
  // after the revoke cannot leave the key behind.
  let inflight: Promise<void> | undefined
  // The lease our key was last put under: etcd3 may call it lost while etcd still holds it
  // (docs/design/etcd.md#leases), so deregister() revokes it too.
  let keyLease: string | undefined
  // Every lease we granted: a key under any of them is ours; under any other lease it belongs to
  // another owner, whom we never overwrite (without `replace`) and never delete.
  const ourLeases = new Set<string>()

  const report = (next: typeof state, error?: Parameters<RegisterContext['onState']>[1]): void => {
    if (signal.aborted) return
    state = next
    callListener('A wayfind registration state listener', () => {
      ctx.onState(next, error)
    })
  }

  const newLease = (): Lease => {
    const l = client.lease(ttlSeconds, { autoKeepAlive: true })
    l.on('lost', (err: Error) => {
      // While a reconciliation runs, it sees the revoked lease and grants a new one itself.
      if (l !== lease || signal.aborted || run.running) return
      debug('%s: lease lost: %s', what, err.message)
      report(
        'lost',
        new LeaseLostError(`The etcd lease of ${reg.name}/${reg.id} was lost; registering again`, {
          cause: err,
        }),
      )
      kick()
    })
    // Typed as a keepalive response by etcd3, but it emits the stream error (lease.ts).
    l.on('keepaliveFailed', (err: unknown) => {
      if (l !== lease || signal.aborted || state !== 'registered') return
      report(
        'degraded',
        unavailable(
          `keeping the lease of ${reg.name}/${reg.id} alive`,
          err,
          options.auth?.username,
        ),
      )
    })
    l.on('keepaliveSucceeded', () => {
      if (l === lease && state === 'degraded') report('registered')
    })
    return l
  }

  /**
   * Grants a lease if we have no live one, then puts our key under it, in a transaction that
   * only succeeds while the key is absent or still the one we read (etcd compares are ANDed,
   * so "absent or ours" takes two steps). An existing key under another lease is another live
   * owner's (etcd deletes a key when its lease expires): a conflict, unless `first` and the
   * caller passed `replace` or the entry advertises our own address and port.
   */
  const putOnce = async (first: boolean): Promise<void> => {
    if (lease === undefined || lease.revoked()) {
      lease?.release()
      lease = newLease()
    }
    const current = lease
    const leaseId = await current.grant()
    ourLeases.add(leaseId)
    for (let round = 0; round < 3; round++) {
      const created = await client
        .if(key, 'Create', '==', 0)
        .then(client.put(key).value(value).lease(leaseId))
        .else(client.get(key))
        .commit()
      if (created.succeeded) {
        putDone(leaseId)
        return
      }
      const kv = created.responses[0]?.response_range.kvs[0]
      if (kv === undefined) continue // deleted in between: try to create it again
      const holder = kv.lease
      if (!ourLeases.has(holder)) {
        const why = takeoverRefusal(kv, first)
        if (why !== undefined) throw new RegistrationConflictError(reg.name, reg.id, why)
      }
      const swapped = await client
        .if(key, 'Mod', '==', kv.mod_revision)
        .then(client.put(key).value(value).lease(leaseId))
        .commit()
      if (swapped.succeeded) {
        putDone(leaseId)
        return
      }
    }
    throw new RegistrationError(
      `The etcd key of ${reg.name}/${reg.id} kept changing while we wrote it; trying again`,
      { retryable: true },
    )
  }

  const putDone = (leaseId: string): void => {
    keyLease = leaseId
    if (signal.aborted) return
    hooks.onPut?.(leaseId)
  }

  /** Why the key held by another lease may not be taken over, or undefined when it may. */
  const takeoverRefusal = (kv: IKeyValue, first: boolean): string | undefined => {
    const holder = `lease ${kv.lease === '0' ? '(none)' : kv.lease}`
    if (!first)
      return `another owner (${holder}) registered this instance id while ours was being renewed; this registration stopped and will not remove it`
    if (ctx.replace === true) return undefined
    if (sameEndpoint(kv.value)) return undefined
    return `another live owner (${holder}) holds this instance id; it is released when that owner deregisters or its lease expires. Pass { replace: true } to take it over`
  }

  /** The held entry advertises our address and port: an earlier run of this very endpoint. */
  const sameEndpoint = (raw: Buffer): boolean => {
    try {
      const held = JSON.parse(raw.toString('utf8')) as { address?: unknown; port?: unknown }
      return held.address === reg.address && held.port === reg.port
    } catch {
      return false
    }
  }

  // Read through calls: handlers change these during awaits, which narrowing cannot see.
  const triggeredAgain = (): boolean => run.again
  const isAborted = (): boolean => signal.aborted

  // One reconciliation at a time; a trigger during one makes it run again.
  function kick(): void {
    if (run.running) {
      run.again = true
      return
    }
    run.running = true
    inflight = (async () => {
      while (!signal.aborted) {
        run.again = false
        try {
          await putOnce(false)
          backoff.reset()
          if (!triggeredAgain()) {
            report('registered')
            break
          }
        } catch (err) {
          if (isAborted()) break
          if (err instanceof RegistrationConflictError) {
            takenOver(err)
            break
          }
          debug('%s: %s', what, errorMessage(err))
          // A put refused for an unknown lease means etcd forgot us (it expired server-side).
          if (lease?.revoked() === true && state !== 'lost')
            report(
              'lost',
              new LeaseLostError(
                `The etcd lease of ${reg.name}/${reg.id} expired; registering again`,
                { cause: err },
              ),
            )
          else if (state === 'registered')
            report('degraded', unavailable(what, err, options.auth?.username))
          await sleep(backoff.next(), signal).catch(() => undefined)
        }
      }
      run.running = false
    })()
  }

  /**
   * Another owner put our key under its lease: report it and stop for good (renewing would
   * fight the new owner). Our lease no longer holds the key, so revoking it later deletes nothing.
   */
  function takenOver(error: RegistrationConflictError): void {
    if (signal.aborted) return
    report('lost', error)
    controller.abort(error)
  }

  /** Our key vanished (deleted by someone, or expired with a lease etcd3 still thinks alive). */
  const keyGone = (): void => {
    if (signal.aborted || run.running) return
    report(
      'lost',
      new RegistrationError(`The etcd key of ${reg.name}/${reg.id} was deleted; putting it back`, {
        retryable: true,
      }),
    )
    kick()
  }

  // The first registration retries transient failures (etcd unreachable, a timeout) with
  // backoff for up to ctx.timeoutMs, like the Consul registrar; a refusal (auth, permission,
  // conflict) fails at once.
  const failed = (err: unknown, detail: string): RegistrationError => {
    const cause = unavailable(what, err, options.auth?.username)
    return new RegistrationError(
      `Registering ${reg.name}/${reg.id} in etcd failed${detail}: ${cause.message}`,
      { cause: err, retryable: cause.retryable },
    )
  }
  try {
    run.running = true
    await retryWithin(
      () => putOnce(true),
      {
        timeoutMs: ctx.timeoutMs ?? DEFAULT_REGISTER_TIMEOUT_MS,
        backoff,
        signal,
        retryable: (err) =>
          !(err instanceof RegistrationConflictError) &&
          (err instanceof RegistrationError ? err.retryable : failed(err, '').retryable),
        onRetry: (err, attempt, delayMs) => {
          hooks.onRetry?.(err, delayMs)
          debug(
            '%s: attempt %d failed (%s); next in %d ms',
            what,
            attempt,
            errorMessage(err),
            delayMs,
          )
        },
      },
      ({ error, attempts, elapsedMs }) =>
        failed(error, ` after ${attempts} attempts in ${Math.round(elapsedMs)} ms`),
    )
    backoff.reset()
    run.running = false
  } catch (err) {
    run.running = false
    lease?.release()
    dispose()
    controller.abort()
    if (err instanceof RegistrationConflictError || err instanceof RegistrationError) throw err
    if (ctx.signal.aborted || providerSignal.aborted) throw err
    throw failed(err, '')
  }
  report('registered')

  // Put the key back if anyone (an operator, a cleanup script) deletes it.
  const keyBuf = Buffer.from(key)
  void runRevisionWatch(
    client,
    options,
    { key: keyBuf, end: Buffer.concat([keyBuf, Buffer.from([0])]) },
    {
      onList(kvs) {
        const kv = kvs[0]
        if (kv === undefined) keyGone()
        else if (!ourLeases.has(kv.lease)) takenOver(conflictBy(kv))
      },
      onEvents(events) {
        for (const e of events) {
          if (e.type === 'Put' && !ourLeases.has(e.kv.lease)) {
            takenOver(conflictBy(e.kv))
            return
          }
        }
        if (events.some((e) => e.type === 'Delete')) keyGone()
      },
      onError() {
        // Already in the debug output; the registration's state follows the lease, not this watch.
      },
    },
    signal,
    `own key ${key}`,
  )

  function conflictBy(kv: { readonly lease: string }): RegistrationConflictError {
    return new RegistrationConflictError(
      reg.name,
      reg.id,
      `another owner (lease ${kv.lease}) took this instance id over; this registration stopped and will not remove it`,
    )
  }

  signal.addEventListener(
    'abort',
    () => {
      // Stop keepalives; deregister() revokes. Without it the key expires after the TTL.
      lease?.release()
      dispose()
    },
    { once: true },
  )

  return {
    async deregister(bound: AbortSignal): Promise<void> {
      controller.abort()
      if (inflight !== undefined) await raceSignal(inflight, bound)
      const ids = new Set<string>()
      if (keyLease !== undefined) ids.add(keyLease)
      const current = await lease?.grant().catch(() => undefined)
      if (current !== undefined) ids.add(current)
      // "lease not found" means it already expired or was revoked: the key is gone either way.
      const revoke = (id: string): Promise<void> =>
        client.leaseClient.leaseRevoke({ ID: id }).then(
          () => undefined,
          (err: unknown) => {
            if (
              err instanceof etcd3().EtcdLeaseInvalidError ||
              /lease not found/i.test(errorMessage(err))
            )
              return
            throw new RegistrationError(
              `Deregistering ${reg.name}/${reg.id} from etcd failed: ${errorMessage(err)}`,
              { cause: err },
            )
          },
        )
      await raceSignal(
        Promise.all([...ids].map(revoke)).then(() => undefined),
        bound,
      )
    },
  }
}
