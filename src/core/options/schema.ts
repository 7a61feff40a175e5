/**
 * Option schemas: one declarative description per entry point (`createWayfind`, `consul()`,
 * `etcd()`, `register()`, `resolve()`, the dispatcher) of every option it takes: its type and
 * bounds, its default, whether it is secret, and the fix an error suggests. `parseOptions()`
 * (check.ts) runs a schema; this file only builds them.
 *
 * Adding an option to an entry point is two lines:
 *
 * 1. the field, with its TSDoc and `@defaultValue`, in the public interface (e.g.
 *    `ConsulRegistryOptions` in `src/registry/consul/options.ts`);
 * 2. one entry in that entry point's schema next to it, e.g.
 *    `maxResponseBytes: integer(1_024, 2 ** 30).default(64 << 20),`
 *
 * Each schema is declared `satisfies SchemaFor<TheInterface>`, so a field without a schema entry
 * (or an entry without a field) does not compile. The parsed type, unknown-key hints,
 * redaction, the frozen result and the docs check (test/unit/core/options-docs.test.ts) all
 * follow from the entry. Mark secrets with `.secret()`: every error below it shows only the
 * value's shape. When an option is renamed, list the old name in the object's `renamed`, so
 * the old spelling fails with a hint naming the new one.
 */
import type { OptionContext } from './check.js'
import { refuseUnknownKeys } from './check.js'

/** A check of a present (not `undefined`) value: returns it parsed, or calls `at.fail()`. */
export type Check<T> = (value: unknown, at: OptionContext) => T

interface OptDef<T> {
  /** Short human description of the accepted type, for docs and messages. */
  readonly type: string
  readonly check: Check<T>
  /** Input used when the option is absent; run through `check` like a caller's value. */
  readonly fallback: { readonly input: unknown } | undefined
  /** When set, the option is required and this is the fix when it is missing. */
  readonly requiredFix: string | undefined
  readonly secret: boolean
  /** Options nested under this one (objects, and unions of objects), for docs and hints. */
  readonly children: Schema | undefined
}

/** One option: how to check it, its default, and whether it is secret. Immutable. */
export class Opt<T> {
  readonly #def: OptDef<T>

  constructor(def: OptDef<T>) {
    this.#def = def
  }

  /** Short description of the accepted type. */
  get type(): string {
    return this.#def.type
  }

  /** True when values of this option (and of every option under it) are never quoted. */
  get isSecret(): boolean {
    return this.#def.secret
  }

  /** The nested options, if this option is an object. */
  get children(): Schema | undefined {
    return this.#def.children
  }

  /** Checks `value` (absent → default, or the "required" error) at `at`. */
  parse(value: unknown, at: OptionContext): T {
    const here = this.#def.secret ? at.secret() : at
    if (value === undefined) {
      const { fallback, requiredFix } = this.#def
      if (fallback !== undefined) return this.#def.check(fallback.input, here)
      if (requiredFix !== undefined) here.fail(value, requiredFix)
      return undefined as T
    }
    return this.#def.check(value, here)
  }

  /** When absent, behave as if `input` had been passed. */
  default(input: unknown): Opt<Exclude<T, undefined>> {
    return new Opt<Exclude<T, undefined>>({
      ...(this.#def as OptDef<Exclude<T, undefined>>),
      fallback: { input },
    })
  }

  /** When absent, fail with `fix`. */
  required(fix: string): Opt<Exclude<T, undefined>> {
    return new Opt<Exclude<T, undefined>>({
      ...(this.#def as OptDef<Exclude<T, undefined>>),
      requiredFix: fix,
    })
  }

  /** Never quote this option's value (or any value under it) in an error. */
  secret(): Opt<T> {
    return new Opt<T>({ ...this.#def, secret: true })
  }

  /** Post-processes a checked value (e.g. a list into a Set); may fail too. */
  map<U>(
    fn: (value: Exclude<T, undefined>, at: OptionContext) => U,
  ): Opt<U | Extract<T, undefined>> {
    const check = this.#def.check
    return new Opt<U | Extract<T, undefined>>({
      ...this.#def,
      check: (value, at) => fn(check(value, at) as Exclude<T, undefined>, at),
    })
  }
}

/** A set of named options. */
export type Schema = { readonly [key: string]: Opt<unknown> }

/**
 * The schema type for a public options interface: exactly one entry per field. Declare a
 * schema `{ ... } satisfies SchemaFor<ConsulRegistryOptions>` so the two cannot drift.
 */
export type SchemaFor<I> = { readonly [K in keyof I]-?: Opt<unknown> }

/** What parsing `S` produces: every key present, defaults applied. */
export type Parsed<S extends Schema> = { readonly [K in keyof S]: OutputOf<S[K]> }

/** The parsed type of one option. */
export type OutputOf<O> = O extends { parse(value: unknown, at: OptionContext): infer T }
  ? T
  : never

function opt<T>(type: string, check: Check<T>, children?: Schema): Opt<T | undefined> {
  return new Opt<T | undefined>({
    type,
    check,
    fallback: undefined,
    requiredFix: undefined,
    secret: false,
    children,
  })
}

/** Milliseconds Node's timers can wait (a larger delay fires at once). */
export const MAX_TIMER_MS = 2 ** 31 - 1

/**
 * A duration in milliseconds, `min` ≤ ms ≤ `max`. With `infinity`, `Infinity` is accepted too
 * (meaning "no limit"; the caller must then arm no timer).
 */
export function duration(
  bounds: { readonly min?: number; readonly max?: number; readonly infinity?: boolean } = {},
): Opt<number | undefined> {
  const { min = 1, max = MAX_TIMER_MS, infinity = false } = bounds
  const range =
    max === Number.POSITIVE_INFINITY ? `of at least ${min}` : `between ${min} and ${max}`
  const fix = `Pass a number of milliseconds ${range}${
    infinity ? ', or Infinity for no limit' : ''
  } (durations end in "Ms": 5_000 is five seconds).`
  return opt<number>('duration in ms', (v, at) => {
    if (
      typeof v !== 'number' ||
      Number.isNaN(v) ||
      (v === Number.POSITIVE_INFINITY ? !infinity : !Number.isFinite(v) || v < min || v > max)
    )
      return at.fail(v, fix)
    return v
  })
}

/** A whole number between `min` and `max`. */
export function integer(min: number, max: number): Opt<number | undefined> {
  return opt<number>('integer', (v, at) => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max)
      return at.fail(v, `Pass a whole number between ${min} and ${max}.`)
    return v
  })
}

/** A finite number between `min` and `max` (e.g. a percentage). */
export function number(min: number, max: number, fix?: string): Opt<number | undefined> {
  return opt<number>('number', (v, at) => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max)
      return at.fail(v, fix ?? `Pass a number between ${min} and ${max}.`)
    return v
  })
}

/** `true` or `false`. */
export function boolean(): Opt<boolean | undefined> {
  return opt<boolean>('boolean', (v, at) => {
    if (typeof v !== 'boolean') return at.fail(v, 'Pass true or false.')
    return v
  })
}

/**
 * A string: non-empty (not blank) unless `allowEmpty`, single-line when `singleLine`, matching
 * `rule` when given (returning a problem sentence, or undefined when fine).
 */
export function string(
  options: {
    readonly fix?: string
    readonly allowEmpty?: boolean
    readonly singleLine?: boolean
    readonly rule?: (value: string) => string | undefined
  } = {},
): Opt<string | undefined> {
  const fix =
    options.fix ??
    (options.allowEmpty === true ? 'Pass a string.' : 'Pass a non-empty string, or leave it out.')
  return opt<string>('string', (v, at) => {
    if (typeof v !== 'string') return at.fail(v, fix)
    if (options.allowEmpty !== true && v.trim() === '') return at.fail(v, fix)
    if (v.includes('\0') || (options.singleLine === true && /[\r\n]/.test(v)))
      return at.fail(v, `${fix} No line breaks or NUL characters.`)
    const problem = options.rule?.(v)
    if (problem !== undefined) return at.fail(v, problem)
    return v
  })
}

/** One of a fixed set of strings. */
export function oneOf<const V extends string>(values: readonly V[]): Opt<V | undefined> {
  return opt(values.map((v) => JSON.stringify(v)).join(' | '), (v, at) => {
    if (typeof v !== 'string' || !(values as readonly string[]).includes(v))
      return at.fail(v, `Use one of ${values.map((x) => JSON.stringify(x)).join(', ')}.`)
    return v as V
  })
}

/** A function (its signature is the interface's business; only `typeof` can be checked). */
export function func<F>(fix = 'Pass a function.'): Opt<F | undefined> {
  return opt('function', (v, at) => {
    if (typeof v !== 'function') return at.fail(v, fix)
    return v as F
  })
}

/** An object with the given methods (a registry, a clock, an undici Dispatcher...). */
export function withMethods<T>(methods: readonly string[], fix: string): Opt<T | undefined> {
  return opt(`object with ${methods.join(', ')}`, (v, at) => {
    if (
      typeof v !== 'object' ||
      v === null ||
      methods.some((m) => typeof (v as Record<string, unknown>)[m] !== 'function')
    )
      return at.fail(v, fix)
    return v as T
  })
}

/** An `AbortSignal` (any object with `aborted` and `addEventListener`, as undici accepts). */
export function abortSignal(): Opt<AbortSignal | undefined> {
  return opt('AbortSignal', (v, at) => {
    if (
      typeof v !== 'object' ||
      v === null ||
      typeof (v as Partial<AbortSignal>).aborted !== 'boolean' ||
      typeof (v as Partial<AbortSignal>).addEventListener !== 'function'
    )
      return at.fail(
        v,
        'Pass an AbortSignal, e.g. AbortSignal.timeout(5_000) or controller.signal.',
      )
    return v as AbortSignal
  })
}

/** A list; each item checked by `item` at `path[i]`. The result is frozen. */
export function list<T>(
  item: Opt<T>,
  options: { readonly min?: number; readonly fix: string },
): Opt<readonly Exclude<T, undefined>[] | undefined> {
  return opt(`list of ${item.type}`, (v, at) => {
    if (!Array.isArray(v) || v.length < (options.min ?? 0)) return at.fail(v, options.fix)
    return Object.freeze(
      v.map((x: unknown, i) => {
        if (x === undefined) at.child(i).fail(x, options.fix)
        return item.parse(x, at.child(i)) as Exclude<T, undefined>
      }),
    )
  })
}

/** A plain object of arbitrary keys whose values `value` checks (e.g. `meta`). Frozen. */
export function record<T>(
  value: Opt<T>,
  fix: string,
): Opt<Readonly<Record<string, T>> | undefined> {
  return opt(`record of ${value.type}`, (v, at) => {
    if (!isPlainObject(v)) return at.fail(v, fix)
    const out: Record<string, T> = {}
    for (const [k, x] of Object.entries(v)) out[k] = value.parse(x, at.child(k))
    return Object.freeze(out)
  })
}

/** Object results already produced by a given `object()` spec: parsing them again is free. */
const parsedBy = new WeakMap<object, object>()

/**
 * A nested set of options. Unknown keys are refused with a near-match hint, `renamed` maps
 * old spellings to their new path (they fail with a hint naming it), `refine` checks rules
 * between fields on the parsed result. The result is frozen. Absent → `undefined`; add
 * `.default({})` to apply the nested defaults instead.
 */
export function object<S extends Schema>(
  schema: S,
  options: {
    readonly fix?: string
    readonly renamed?: Readonly<Record<string, string>>
    readonly refine?: (parsed: Parsed<S>, at: OptionContext) => void
  } = {},
): Opt<Parsed<S> | undefined> {
  const token = {}
  return opt(
    'object',
    (v, at) => {
      if (typeof v === 'object' && v !== null && parsedBy.get(v) === token) return v as Parsed<S>
      if (!isPlainObject(v)) return at.fail(v, options.fix ?? 'Pass an object.')
      refuseUnknownKeys(v, schema, options.renamed ?? {}, at)
      const out: Record<string, unknown> = {}
      for (const [key, spec] of Object.entries(schema)) out[key] = spec.parse(v[key], at.child(key))
      options.refine?.(out as Parsed<S>, at)
      const frozen = Object.freeze(out) as Parsed<S>
      parsedBy.set(frozen, token)
      return frozen
    },
    schema,
  )
}

/**
 * `false` (the feature is off: parsed as `undefined`) or the options of `spec`. Absent means
 * on, with `spec`'s own default.
 */
export function orFalse<T>(spec: Opt<T>): Opt<T | undefined> {
  return new Opt<T | undefined>({
    type: `false | ${spec.type}`,
    check: (v, at) => (v === false ? undefined : spec.parse(v, at)),
    fallback: { input: undefined },
    requiredFix: undefined,
    secret: false,
    children: spec.children,
  })
}

/**
 * An option whose check does not fit the builders above (a union, a parse with context).
 * `children` lists the options nested under it, for hints and the docs check.
 */
export function custom<T>(type: string, check: Check<T>, children?: Schema): Opt<T | undefined> {
  return opt(type, check, children)
}

/** True for `{}`-style objects (not arrays, not null). */
export function isPlainObject(v: unknown): v is Readonly<Record<string, unknown>> {
  return typeof v === 'object' && v !== null && !Array.isArray(v)
}

/** Every option path a schema declares (`backoff`, `backoff.initialMs`, ...), for docs checks. */
export function optionPaths(schema: Schema, prefix = ''): string[] {
  const paths: string[] = []
  for (const [key, spec] of Object.entries(schema)) {
    const path = prefix === '' ? key : `${prefix}.${key}`
    paths.push(path)
    if (spec.children !== undefined) paths.push(...optionPaths(spec.children, path))
  }
  return paths
}
