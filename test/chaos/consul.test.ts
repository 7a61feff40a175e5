/**
 * The seeded chaos convergence suite on the Consul test server, short seed (CI). The long run
 * and replays: `npm run chaos -- --registry consul --seed N --ops M` (see docs/testing.md).
 */
import { it } from 'vitest'
import { consulTarget } from './consul-target.js'
import { formatReport, runChaos } from './driver.js'
import { expectConverged } from './expect-converged.js'

it('consul: every watched cache converges through index regressions, storms, drops and agent restarts', async () => {
  const report = await runChaos(await consulTarget(), { seed: 1, ops: 120 })
  process.stdout.write(formatReport(report))
  expectConverged(report, ['regress', 'storm', 'drop', 'restart'])
})
