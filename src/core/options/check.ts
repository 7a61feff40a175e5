/**
 * Running a schema over what a caller passed: the walk, the error it throws, and unknown keys.
 * Every option error of every entry point is raised here, so they all read the same way:
 * `Invalid option "<full.path>": got <value, redacted when secret>. <fix>`.
 */
import { InvalidOptionError } from '../../errors.js'
import { nearMatch } from './near-match.js'
import type { Opt, Schema } from './schema.js'

/** Where in the options a check is: the full path, the entry point, and whether it is secret. */
export class OptionContext {
  /** Dotted path, e.g. `dispatcher.retry.backoff`; '' at the root. */
  readonly path: string
  /** The entry point, for messages about the root, e.g. `consul()`. */
  readonly label: string
  /** True inside an option marked secret: values are never quoted. */
  readonly isSecret: boolean

  constructor(path: string, label: string, isSecret = false) {
    this.path = path
    this.label = label
    this.isSecret = isSecret
  }

  /** The context of a child option (`key`) or list item (`[index]`). */
  child(key: string | number): OptionContext {
    return new OptionContext(this.pathOf(key), this.label, this.isSecret)
  }

  /** The same place, now secret. */
  secret(): OptionContext {
    return this.isSecret ? this : new OptionContext(this.path, this.label, true)
  }

  /** Full path of a child option, for hints ("did you mean ..."). */
  pathOf(key: string | number): string {
    if (typeof key === 'number') return `${this.path}[${String(key)}]`
    return this.path === '' ? key : `${this.path}.${key}`
  }

  /** Throws the `InvalidOptionError` for `value` at this place. */
  fail(value: unknown, fix: string): never {
    throw new InvalidOptionError(this.path === '' ? 'options' : this.path, value, fix, {
      secret: this.isSecret,
    })
  }
}

/**
 * Checks `input` against `spec` (usually an `object(...)` schema) and returns the parsed,
 * frozen result with defaults applied. `path` prefixes every option path in errors
 * (`'dispatcher'` → `dispatcher.retry.sentRetries`); `label` names the entry point.
 */
export function parseOptions<T>(
  spec: Opt<T>,
  input: unknown,
  where: { readonly label: string; readonly path?: string },
): T {
  return spec.parse(input, new OptionContext(where.path ?? '', where.label))
}

/** Refuses keys `schema` does not declare, with a near-match hint or the renamed spelling. */
export function refuseUnknownKeys(
  record: Readonly<Record<string, unknown>>,
  schema: Schema,
  renamed: Readonly<Record<string, string>>,
  at: OptionContext,
): void {
  for (const key of Object.keys(record)) {
    if (Object.hasOwn(schema, key)) continue
    const value = record[key]
    const here = at.child(key)
    const owner = at.path === '' ? at.label : `"${at.path}"`
    const to = renamed[key]
    if (to !== undefined)
      here.fail(value, `${owner} calls this option "${at.pathOf(to)}" now: rename it.`)
    const known = Object.keys(schema)
    const guess = nearMatch(key, known)
    // The value of a misspelt secret (`tokn`) is as secret as the real one; a name we cannot
    // place at all may be anything, so its text is not quoted either.
    const secret =
      guess === undefined ? typeof value === 'string' : (schema[guess]?.isSecret ?? false)
    ;(secret ? here.secret() : here).fail(
      value,
      guess === undefined
        ? `${owner} has no option "${key}"; its options are: ${known.join(', ')}.`
        : `${owner} has no option "${key}"; did you mean "${at.pathOf(guess)}"?`,
    )
  }
}
