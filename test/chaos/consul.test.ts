/**
 * The seeded chaos convergence suite on the Consul test server, short seed (CI). The long run
 * and replays: `npm run chaos -- --registry consul --seed N --ops M` (see docs/testing.md).
 */
import { expect, it } from 'vitest'
import { consulTarget } from './consul-target.js'
import { formatReport, runChaos } from './driver.js'

it('consul: every watched cache converges through index regressions, storms, drops and agent restarts', async () => {
  const report = await runChaos(await consulTarget(), { seed: 1, ops: 120 })
  process.stdout.write(formatReport(report))
  expect(report.problems).toEqual([])
  for (const kind of ['regress', 'storm', 'drop', 'restart'])
    expect(report.faults).toHaveProperty(kind)
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
