/**
 * Builds the `etcd3` client with the fault handling of docs/design/etcd.md#client-settings, adds
 * the two calls wayfind makes its own way on etcd3's connections (Watch streams that require a
 * leader; the listing's Range, read by range-wire.ts), and maps its errors.
 */
import type { IPolicy } from 'cockatiel'
import type { Etcd3, ICallable, IOptions, IRangeResponse, WatchClient } from 'etcd3'
import { debug as log } from '../../core/debug.js'
import { errorMessage, RegistryUnavailableError } from '../../errors.js'
import { cockatiel, etcd3 } from './load.js'
import type { ParsedEtcdOptions } from './options.js'
import {
  decodeRangeResponse,
  encodeRangeRequest,
  RANGE_PATH,
  type RangePage,
  type RangeRequest,
} from './range-wire.js'

/** `NODE_DEBUG=wayfind` output, prefixed with the area. Never pass secrets. */
export function debug(format: string, ...args: unknown[]): void {
  if (log.enabled) log(`etcd: ${format}`, ...args)
}

/**
 * etcd3's client plus a Watch client whose streams carry `hasleader: true` (Go's
 * `clientv3.WithRequireLeader`): a member that loses its leader cancels them instead of going
 * quiet (etcd-io/etcd#7593; v3rpc's stream interceptor, rpctypes.MetadataRequireLeaderKey).
 */
export interface WayfindEtcd3 extends Etcd3 {
  readonly leaderWatchClient: WatchClient
  /**
   * One `KV.Range` call for a listing, its answer read by range-wire.ts instead of etcd3's
   * decoder. Same connections, token, host choice, circuit breakers, retries and deadline as
   * `kv.range()`, and its errors are etcd3's typed errors.
   */
  rangePage(request: RangeRequest): Promise<RangePage>
}

/** What the subclass needs besides etcd3's options: the policies and deadline it was given. */
interface CallSettings {
  /** The policy etcd3 runs every unary call in (`faultHandling.global`). */
  readonly global: IPolicy
  readonly requestTimeoutMs: number
}

type WayfindEtcd3Class = new (options: IOptions, settings: CallSettings) => WayfindEtcd3

// The subclass needs etcd3's Etcd3 at definition time, so it is defined on first use (load.ts).
let wayfindEtcd3Class: WayfindEtcd3Class | undefined

function defineWayfindEtcd3(): WayfindEtcd3Class {
  const { Etcd3, WatchClient, EtcdInvalidAuthTokenError, castGrpcError } = etcd3()
  const { isBrokenCircuitError } = cockatiel()
  return class WayfindEtcd3Client extends Etcd3 implements WayfindEtcd3 {
    readonly leaderWatchClient: WatchClient
    readonly #settings: CallSettings

    constructor(options: IOptions, settings: CallSettings) {
      super(options)
      this.#settings = settings
      const pool: ICallable<unknown> = this.pool
      this.leaderWatchClient = new WatchClient({
        exec: pool.exec.bind(pool),
        withConnection: (service, fn) =>
          pool.withConnection(service, (args) => {
            // A copy: the pool shares one metadata object (the auth token) across all calls.
            const metadata = args.metadata.clone()
            metadata.set('hasleader', 'true')
            return fn({ ...args, metadata })
          }),
        markFailed: (resource, error) => {
          pool.markFailed(resource, error)
        },
        get callOptionsFactory() {
          return pool.callOptionsFactory
        },
      })
    }

    // What etcd3's ConnectionPool.exec does for kv.range(), with our (de)serializers: the global
    // policy around withConnection (which picks the host, adds the token, runs the host's
    // breaker and maps gRPC errors to etcd3's), and the first error kept over a broken circuit.
    // One difference: exec walks one shuffled host order across its retries, and that order is
    // private, so here each retry draws a new one and may try the same member again; the
    // member's breaker and the listing loop's backoff cover that case.
    async rangePage(request: RangeRequest): Promise<RangePage> {
      const pool = this.pool
      const argument = encodeRangeRequest(request)
      let lastError: Error | undefined
      try {
        return await this.#settings.global.execute(() =>
          pool.withConnection(
            'KV',
            ({ client, metadata }) =>
              new Promise<RangePage>((resolve, reject) => {
                client.makeUnaryRequest(
                  RANGE_PATH,
                  (bytes: Buffer) => bytes,
                  decodeRangeResponse,
                  argument,
                  metadata,
                  { deadline: Date.now() + this.#settings.requestTimeoutMs },
                  (err, page) => {
                    if (err !== null) {
                      lastError = castGrpcError(err)
                      reject(err)
                    } else if (page === undefined) reject(new Error('etcd sent no Range answer'))
                    else resolve(page)
                  },
                )
              }),
          ),
        )
      } catch (err) {
        // Only etcd3's own call refreshes an expired token (its authenticator is private): one
        // listing page goes through it, and the next listing finds the new token.
        if (err instanceof EtcdInvalidAuthTokenError)
          return pageOf(
            await this.kv.range({
              key: Buffer.from(request.key),
              range_end: Buffer.from(request.rangeEnd),
              limit: request.limit,
              revision: (request.revision ?? 0n).toString(),
            }),
          )
        if (
          isBrokenCircuitError(err) &&
          lastError !== undefined &&
          !isBrokenCircuitError(lastError)
        )
          throw lastError
        throw err
      }
    }
  }
}

/** An answer etcd3 decoded, as the listing reads it. */
function pageOf(res: IRangeResponse): RangePage {
  return {
    revision: BigInt(res.header.revision),
    kvs: res.kvs.map((kv) => ({ key: kv.key, value: kv.value, lease: kv.lease })),
    more: res.more,
  }
}

/** Creates the etcd3 client. No I/O happens until the first call. */
export function createEtcdClient(o: ParsedEtcdOptions): WayfindEtcd3 {
  const { isRecoverableError } = etcd3()
  const { circuitBreaker, ConsecutiveBreaker, handleWhen, noop, retry } = cockatiel()
  const single = o.hosts.length === 1
  const global: IPolicy = single
    ? noop
    : retry(handleWhen(isRecoverableError), { maxAttempts: Math.min(o.hosts.length - 1, 2) })
  const options: IOptions = {
    hosts: [...o.hosts],
    grpcOptions: {
      // A half-open connection is otherwise never noticed
      // (docs/design/etcd.md#half-open-connections).
      'grpc.keepalive_time_ms': o.keepaliveTimeMs,
      'grpc.keepalive_timeout_ms': o.keepaliveTimeoutMs,
      'grpc.keepalive_permit_without_calls': 1,
      // grpc-js' own reconnect backoff (1 s up to 120 s by default) would otherwise stack on ours.
      'grpc.initial_reconnect_backoff_ms': Math.min(o.backoff.initialMs, 1_000),
      'grpc.max_reconnect_backoff_ms': o.backoff.maxMs,
    },
    // Unary calls only: streams live until we cancel them.
    defaultCallOptions: (ctx) =>
      ctx.isStream ? {} : { deadline: Date.now() + o.requestTimeoutMs },
    faultHandling: {
      // Our loops retry with backoff; etcd3's breaker locked a lone member out for up to 5 s
      // after it came back (docs/design/etcd.md#client-settings). With several members a short
      // breaker still helps skip a dead one, and a retry moves an attempt to another member.
      host: () =>
        single
          ? noop
          : circuitBreaker(handleWhen(isRecoverableError), {
              halfOpenAfter: 1_000,
              breaker: new ConsecutiveBreaker(3),
            }),
      global,
    },
  }
  if (o.auth !== undefined) options.auth = { username: o.auth.username, password: o.auth.password }
  if (o.credentials !== undefined) options.credentials = o.credentials
  wayfindEtcd3Class ??= defineWayfindEtcd3()
  return new wayfindEtcd3Class(options, { global, requestTimeoutMs: o.requestTimeoutMs })
}

/** etcd refused our user/password: retrying will not help until the configuration changes. */
export function isAuthFailure(err: unknown): boolean {
  return err instanceof etcd3().EtcdAuthenticationFailedError
}

/** The token expired or etcd restarted (simple tokens live in memory): re-authenticate. */
export function isInvalidToken(err: unknown): boolean {
  return (
    err instanceof etcd3().EtcdInvalidAuthTokenError ||
    /invalid auth token/i.test(errorMessage(err))
  )
}

/** Wraps an etcd3/gRPC error for listeners. Messages never include credentials. */
export function unavailable(
  what: string,
  err: unknown,
  username: string | undefined,
): RegistryUnavailableError {
  if (isAuthFailure(err))
    return new RegistryUnavailableError(
      `etcd rejected the credentials of user ${JSON.stringify(username ?? '')} while ${what}: check auth.username and auth.password`,
      { cause: err, retryable: false },
    )
  if (err instanceof etcd3().EtcdPermissionDeniedError)
    return new RegistryUnavailableError(
      `etcd denied user ${JSON.stringify(username ?? '')} permission while ${what}: grant it read (and write, to register) on the prefix`,
      { cause: err, retryable: false },
    )
  return new RegistryUnavailableError(
    `etcd failed while ${what}: ${firstLine(errorMessage(err))}`,
    { cause: err },
  )
}

function firstLine(s: string): string {
  const i = s.indexOf('\n')
  return i < 0 ? s : s.slice(0, i)
}

/** The smallest key greater than every key starting with `prefix` (etcd's range_end for a prefix). */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i] !== 0xff) {
      end[i] = (end[i] ?? 0) + 1
      return end.subarray(0, i + 1)
    }
  }
  // All 0xff (or empty): to the end of the keyspace, as clientv3.GetPrefixRangeEnd does.
  return Buffer.from([0])
}
