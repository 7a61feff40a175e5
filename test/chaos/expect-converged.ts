/**
 * What every chaos suite asserts of its report: no problem, every fault kind of the target
 * injected at least once, events seen, and nothing lost, duplicated, empty, inconsistent or
 * unhandled. Spelled out field by field so that a failure names what went wrong.
 */
import { expect } from 'vitest'
import type { ChaosReport } from './driver.js'

export function expectConverged(report: ChaosReport, faultKinds: readonly string[]): void {
  expect(report.problems).toEqual([])
  for (const kind of faultKinds) expect(report.faults).toHaveProperty(kind)
  expect(report.events).toBeGreaterThan(0)
  expect({
    lost: report.lost,
    duplicate: report.duplicate,
    noop: report.noop,
    inconsistent: report.inconsistent,
    unhandledRejections: report.unhandledRejections,
  }).toEqual({ lost: 0, duplicate: 0, noop: 0, inconsistent: 0, unhandledRejections: 0 })
  expect(report.ok).toBe(true)
}
