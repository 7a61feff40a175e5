/**
 * What a registry answer may do to a service's instance set: one policy for every provider
 * (docs/registry-answers.md). Pure functions, no I/O.
 *
 * 1. An entry that cannot be read keeps its last good instance (matched by key), or is skipped
 *    when it never had one. The others are applied as they are.
 * 2. An answer in which every entry is malformed never replaces a non-empty set: the last good
 *    set keeps serving as a whole (a registry, or a proxy in front of it, that garbles every
 *    entry says nothing about which instances are gone).
 * 3. One answer, one error: the malformed entries of an answer are reported together, naming the
 *    service, the first entry and its field, and how many more there are.
 *
 * The third rule of the policy, "a sudden empty answer is confirmed before it wipes a set", is
 * applied by the providers whose answers can be spuriously empty (Consul: a confirming plain
 * read); an etcd range is a linearizable read at one revision, and the memory registry is the
 * truth itself.
 */
import { MalformedInstanceError, quote } from '../errors.js'
import type { Instance } from '../instance.js'

/** One registry entry that could not be read as an instance. */
export interface EntryFault {
  /** Where the entry is, for messages: an etcd key, Consul's `node/serviceId` (`#n` when unnamed). */
  readonly entry: string
  /** The instance key it would have had, when the entry names it: its last good value is kept. */
  readonly key: string | undefined
  /** The field that failed, e.g. `Service.Port` or `value`. */
  readonly field: string
  readonly reason: string
}

/** A mapped answer: the entries that became instances, and those that failed. */
export interface MappedAnswer {
  readonly service: string
  /** Instances read from the answer. */
  readonly instances: readonly Instance[]
  readonly faults: readonly EntryFault[]
  /** Entries in the answer, including those left out on purpose (critical, ignored). */
  readonly entries: number
}

/** The set to apply and the one error to report. */
export interface AnswerOutcome {
  /** Sorted by key. The previous set itself (same array) when the answer changed nothing. */
  readonly instances: readonly Instance[]
  /** Every entry was malformed and the previous set was kept whole (rule 2). */
  readonly keptAll: boolean
  readonly error: MalformedInstanceError | undefined
  /** Equal for two answers with the same faults: lets a watch report a lasting fault once. */
  readonly faultSignature: string
}

/** Applies rules 1-3 to `answer`, given the set currently served. */
export function applyAnswer(previous: readonly Instance[], answer: MappedAnswer): AnswerOutcome {
  const { faults } = answer
  if (faults.length === 0)
    return { instances: answer.instances, keptAll: false, error: undefined, faultSignature: '' }
  const keptAll =
    answer.instances.length === 0 && faults.length >= answer.entries && previous.length > 0
  let instances: readonly Instance[]
  let kept = 0
  if (keptAll) {
    instances = previous
    kept = previous.length
  } else {
    const byKey = new Map<string, Instance>()
    for (const i of previous) byKey.set(i.key, i)
    const present = new Set(answer.instances.map((i) => i.key))
    const restored: Instance[] = []
    for (const f of faults) {
      if (f.key === undefined || present.has(f.key)) continue
      const lastGood = byKey.get(f.key)
      if (lastGood === undefined) continue
      present.add(f.key)
      restored.push(lastGood)
    }
    kept = restored.length
    instances =
      restored.length === 0 ? answer.instances : sortByKey([...answer.instances, ...restored])
  }
  return {
    instances,
    keptAll,
    error: malformedAnswerError(answer.service, faults, { keptAll, kept }),
    faultSignature: faults.map((f) => `${f.entry}\u0000${f.field}\u0000${f.reason}`).join('\n'),
  }
}

/** The one error reporting an answer's malformed entries. */
export function malformedAnswerError(
  service: string,
  faults: readonly EntryFault[],
  { keptAll = false, kept = 0 }: { keptAll?: boolean; kept?: number } = {},
): MalformedInstanceError | undefined {
  const first = faults[0]
  if (first === undefined) return undefined
  const more = faults.length - 1
  const others =
    more === 0
      ? ''
      : `; ${more} more malformed ${more === 1 ? 'entry' : 'entries'} in the same answer (${faults
          .slice(1, 4)
          .map((f) => quote(f.entry, 40))
          .join(', ')}${more > 3 ? ', …' : ''})`
  const outcome = keptAll
    ? '; every entry of the answer is malformed, so the last good set keeps serving as a whole'
    : kept > 0
      ? `; ${kept} of them ${kept === 1 ? 'keeps its' : 'keep their'} last good value`
      : ''
  return new MalformedInstanceError(first.entry, `${first.reason}${others}${outcome}`, {
    service,
    field: first.field,
    entries: faults.length,
    details: faults.slice(0, 100).map(({ entry, field, reason }) => ({ entry, field, reason })),
  })
}

function sortByKey(list: Instance[]): Instance[] {
  return list.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0))
}
