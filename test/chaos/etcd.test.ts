/**
 * The seeded chaos convergence suite on etcd, short seed (CI). The long run and replays:
 * `npm run chaos -- --registry etcd --seed N --ops M` (see docs/testing.md).
 */
import { expect, it } from 'vitest'
import { formatReport, runChaos } from './driver.js'
import { etcdTarget } from './etcd-target.js'

it('etcd: every watched cache converges to the registry through SIGKILL, cuts and compaction', async () => {
  const report = await runChaos(await etcdTarget(), { seed: 1, ops: 160 })
  process.stdout.write(formatReport(report))
  expect(report.problems).toEqual([])
  expect(report.faults).toHaveProperty('sigkill')
  expect(report.faults).toHaveProperty('cut')
  expect(report.faults).toHaveProperty('compact')
  expect(report.events).toBeGreaterThan(0)
  expect({
    lost: report.lost,
    duplicate: report.duplicate,
    noop: report.noop,
    inconsistent: report.inconsistent,
    unhandledRejections: report.unhandledRejections,
  }).toEqual({ lost: 0, duplicate: 0, noop: 0, inconsistent: 0, unhandledRejections: 0 })
  expect(report.ok).toBe(true)
})
