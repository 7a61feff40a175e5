/**
 * The schemas of `wf.register(registration, options)`, of `handle.deregister(options)` and of
 * `startHealthServer(options)`: defaults and checks, in one place. The option types are the
 * contract in `registrar.ts` and `health-server.ts`.
 */
import { OptionContext, parseOptions, refuseUnknownKeys } from '../core/options/check.js'
import {
  abortSignal,
  boolean,
  custom,
  duration,
  func,
  integer,
  isPlainObject,
  list,
  object,
  record,
  string,
  type OutputOf,
  withMethods,
  type SchemaFor,
} from '../core/options/schema.js'
import { instanceProblem } from '../instance.js'
import { DEFAULT_REGISTER_TIMEOUT_MS } from '../core/retry.js'
import {
  DEFAULT_DRAIN_DELAY_MS,
  DEFAULT_DRAIN_TIMEOUT_MS,
  type NormalizedDrainOptions,
} from './drain-options.js'
import type { HealthHandlerOptions } from './health-handler.js'
import type { HealthServerOptions } from './health-server.js'
import type { DrainableServer } from './server-drain.js'
import type {
  DeregisterOptions,
  HttpCheck,
  NormalizedHttpCheck,
  NormalizedRegistration,
  NormalizedTtlCheck,
  RegisterOptions,
  Registration,
  TtlCheck,
} from './contract.js'

/** Default bound on deregistration. */
export const DEFAULT_SHUTDOWN_TIMEOUT_MS = 3_000

const HEALTH_URL_FIX = 'Pass an absolute http(s) URL, e.g. "http://10.0.0.7:8080/health".'

const httpCheckSchema = {
  http: string({ fix: 'Pass the health URL, e.g. "http://10.0.0.7:8080/health".' })
    .required('Pass the health URL, e.g. "http://10.0.0.7:8080/health".')
    .map((http, at) => {
      let url: URL
      try {
        url = new URL(http)
      } catch {
        return at.fail(http, HEALTH_URL_FIX)
      }
      if (url.protocol !== 'http:' && url.protocol !== 'https:')
        return at.fail(http, 'Only http: and https: health URLs can be checked.')
      return http
    }),
  intervalMs: duration({ min: 100 }).default(10_000),
  timeoutMs: duration().default(5_000),
  deregisterCriticalAfterMs: duration(),
} satisfies SchemaFor<HttpCheck>

const ttlCheckSchema = {
  ttlMs: duration({ min: 1_000 }).required('Pass the TTL in milliseconds, e.g. { ttlMs: 30_000 }.'),
  deregisterCriticalAfterMs: duration(),
} satisfies SchemaFor<TtlCheck>

const httpCheck = object(httpCheckSchema).map((c): NormalizedHttpCheck =>
  Object.freeze({ kind: 'http', ...c }),
)
const ttlCheck = object(ttlCheckSchema).map((c): NormalizedTtlCheck =>
  Object.freeze({ kind: 'ttl', ...c }),
)
const CHECK_FIX = 'Pass { http: url, intervalMs } for an HTTP check or { ttlMs } for a TTL check.'

/** `check`: an HTTP check or a TTL check, told apart by `http` / `ttlMs`. */
const check = custom<NormalizedHttpCheck | NormalizedTtlCheck>(
  'HTTP or TTL check',
  (v, at) => {
    if (!isPlainObject(v)) return at.fail(v, CHECK_FIX)
    if (v.http !== undefined && v.ttlMs !== undefined)
      return at.fail(v, 'Pass either { http, intervalMs } or { ttlMs }, not both.')
    if (v.http !== undefined) return httpCheck.parse(v, at) as NormalizedHttpCheck
    if (v.ttlMs !== undefined) return ttlCheck.parse(v, at) as NormalizedTtlCheck
    refuseUnknownKeys(v, { ...httpCheckSchema, ...ttlCheckSchema }, {}, at)
    return at.fail(v, CHECK_FIX)
  },
  { ...httpCheckSchema, ...ttlCheckSchema },
)

/** The schema of {@link Registration}. */
export const registrationSchema = {
  name: string({
    fix: 'Pass the service name, e.g. "payments".',
    rule: (n) => (/[/\s]/.test(n) ? 'Service names cannot contain "/" or spaces.' : undefined),
  }).required('Pass the service name, e.g. "payments".'),
  // Absent: `${name}-${address}-${port}`.
  id: string({
    fix: 'Pass a non-empty instance id, unique within the service, or leave it out.',
    rule: (id) => (id.includes('/') ? 'Instance ids cannot contain "/".' : undefined),
  }),
  address: string({
    fix: 'Pass the address other services connect to, e.g. "10.0.0.7".',
  }).required('Pass the address other services connect to, e.g. "10.0.0.7".'),
  port: integer(1, 65535).required('Pass the port other services connect to, e.g. 8080.'),
  tags: list(string({ allowEmpty: true, fix: 'Pass an array of strings.' }), {
    fix: 'Pass an array of strings.',
  }).default([]),
  meta: record(
    string({ allowEmpty: true, fix: 'Meta values must be strings.' }).required(
      'Meta values must be strings.',
    ),
    'Pass an object of string values, e.g. { zone: "a" }.',
  ).default({}),
  weight: integer(1, 65535).default(1),
  check,
} satisfies SchemaFor<Registration>

const registration = object(registrationSchema, {
  fix: 'Pass a registration such as { name: "payments", address: "10.0.0.7", port: 8080 }.',
}).default({})

/** Checks a registration and applies defaults. Throws `InvalidOptionError`. */
export function parseRegistration(input: Registration): NormalizedRegistration {
  const r = parseOptions(registration, input, { label: 'register()' })
  const id = r.id ?? `${r.name}-${r.address}-${r.port}`
  const problem = instanceProblem({
    id,
    service: r.name,
    host: r.address,
    port: r.port,
    weight: r.weight,
  })
  if (problem !== undefined)
    new OptionContext('address', 'register()').fail(r.address, `Fix the registration: ${problem}.`)
  return Object.freeze({ ...r, id })
}

/** The schema of {@link RegisterOptions}. */
export const registerOptionsSchema = {
  handleSignals: boolean().default(false),
  // Absent: the same as handleSignals.
  handleCrashes: boolean(),
  shutdownTimeoutMs: duration().default(DEFAULT_SHUTDOWN_TIMEOUT_MS),
  signal: abortSignal(),
  timeoutMs: duration().default(DEFAULT_REGISTER_TIMEOUT_MS),
  replace: boolean().default(false),
  server: withMethods<DrainableServer>(
    ['close', 'on', 'listen'],
    'Pass the node:http, node:https or node:http2 server the service listens on (for fastify: its .server, or use onDrain: () => app.close()).',
  ),
  onDrain: func<() => Promise<void>>(
    'Pass an async function that stops the rest of your work, e.g. () => app.close().',
  ),
  // Absent: DEFAULT_DRAIN_DELAY_MS with a server or onDrain (something to drain), else 0.
  drainDelayMs: duration({ min: 0 }),
  drainTimeoutMs: duration().default(DEFAULT_DRAIN_TIMEOUT_MS),
} satisfies SchemaFor<RegisterOptions>

const registerOptions = object(registerOptionsSchema).default({})

type RawRegisterOptions = OutputOf<typeof registerOptions>

/** Checked {@link RegisterOptions}; the drain options grouped for the drain sequence. */
export interface ParsedRegisterOptions extends Omit<
  RawRegisterOptions,
  'handleCrashes' | 'server' | 'onDrain' | 'drainDelayMs' | 'drainTimeoutMs'
> {
  readonly handleCrashes: boolean
  readonly drain: NormalizedDrainOptions
}

/** Checks the options of `wf.register()`; errors name `options.<key>`. */
export function parseRegisterOptions(input: RegisterOptions | undefined): ParsedRegisterOptions {
  const { server, onDrain, drainDelayMs, drainTimeoutMs, ...o } = parseOptions(
    registerOptions,
    input,
    { label: 'register()', path: 'options' },
  )
  const somethingToDrain = server !== undefined || onDrain !== undefined
  return Object.freeze({
    ...o,
    handleCrashes: o.handleCrashes ?? o.handleSignals,
    drain: Object.freeze({
      server,
      onDrain,
      drainDelayMs: drainDelayMs ?? (somethingToDrain ? DEFAULT_DRAIN_DELAY_MS : 0),
      drainTimeoutMs,
    }),
  })
}

/** The schema of {@link DeregisterOptions}. */
export const deregisterSchema = {
  // Absent: the registration's shutdownTimeoutMs.
  timeoutMs: duration(),
  signal: abortSignal(),
} satisfies SchemaFor<DeregisterOptions>

const deregisterOptions = object(deregisterSchema).default({})

/** Checks the options of `handle.deregister()`. */
export function parseDeregisterOptions(
  input: DeregisterOptions | undefined,
): OutputOf<typeof deregisterOptions> {
  return parseOptions(deregisterOptions, input, { label: 'deregister()' })
}

/** The schema of {@link HealthServerOptions}. */
export const healthServerSchema = {
  port: integer(0, 65535).default(0),
  host: string().default('127.0.0.1'),
  path: string({
    fix: 'Pass a path starting with "/", e.g. "/health".',
    rule: (p) => (p.startsWith('/') ? undefined : 'Pass a path starting with "/", e.g. "/health".'),
  }).default('/health'),
  check: func<NonNullable<HealthServerOptions['check']>>(),
} satisfies SchemaFor<HealthServerOptions>

const healthServerOptions = object(healthServerSchema).default({})

/** Checks the options of `startHealthServer()`. */
export function parseHealthServerOptions(
  input: HealthServerOptions | undefined,
): OutputOf<typeof healthServerOptions> {
  return parseOptions(healthServerOptions, input, { label: 'startHealthServer()' })
}

const HEALTH_PATH_FIX =
  'Pass a path starting with "/", e.g. "/health", or null to answer on every path.'

/** The schema of {@link HealthHandlerOptions} (`wf.healthHandler()`). */
export const healthHandlerSchema = {
  // `null` answers on every path (the framework routes).
  path: custom<string | null>('path or null', (v, at) => {
    if (v === null) return null
    if (typeof v !== 'string' || !v.startsWith('/')) return at.fail(v, HEALTH_PATH_FIX)
    return v
  }).default('/health'),
  check: func<NonNullable<HealthHandlerOptions['check']>>('Pass a function returning a boolean.'),
} satisfies SchemaFor<HealthHandlerOptions>

const healthHandlerOptions = object(healthHandlerSchema).default({})

/** Checks the options of `wf.healthHandler()`. */
export function parseHealthHandlerOptions(
  input: HealthHandlerOptions | undefined,
): OutputOf<typeof healthHandlerOptions> {
  return parseOptions(healthHandlerOptions, input, { label: 'healthHandler()', path: 'options' })
}
