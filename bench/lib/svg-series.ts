/**
 * Time series as small multiples (one panel per metric, each with its own y axis), for soak
 * runs: the samples as a line and the least-squares fit as a dashed line. Self-contained SVG.
 */

export interface SeriesPanel {
  readonly label: string
  readonly unit: string
  /** [minutes, value] */
  readonly points: readonly (readonly [number, number])[]
  /** Least-squares fit over the measured window, drawn dashed: value = intercept + slope × t. */
  readonly fit?: { readonly from: number; readonly slope: number; readonly intercept: number }
}

const W = 760
const PANEL_H = 150
const M = { left: 80, right: 20, top: 40, gap: 30 }

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

function fmt(v: number): string {
  const a = Math.abs(v)
  return a >= 100 ? v.toFixed(0) : a >= 10 ? v.toFixed(1) : v.toFixed(2)
}

export function seriesSvg(title: string, panels: readonly SeriesPanel[]): string {
  const height = M.top + panels.length * (PANEL_H + M.gap) + 20
  const pw = W - M.left - M.right
  const tMax = Math.max(...panels.flatMap((p) => p.points.map(([t]) => t)), 1e-9)
  const parts: string[] = [
    `<text x="${W / 2}" y="22" text-anchor="middle" font-size="15" font-weight="bold">${esc(title)}</text>`,
  ]
  panels.forEach((panel, i) => {
    const top = M.top + i * (PANEL_H + M.gap)
    const ys = panel.points.map(([, v]) => v)
    let lo = Math.min(...ys)
    let hi = Math.max(...ys)
    if (!(hi > lo)) {
      lo -= 1
      hi += 1
    }
    const x = (t: number): number => M.left + (t / tMax) * pw
    const y = (v: number): number => top + PANEL_H - ((v - lo) / (hi - lo)) * PANEL_H
    parts.push(
      `<rect x="${M.left}" y="${top}" width="${pw}" height="${PANEL_H}" fill="none" stroke="#ccc"/>`,
      `<text x="${M.left + 6}" y="${top + 14}" font-size="12" font-weight="bold">${esc(`${panel.label} (${panel.unit})`)}</text>`,
      `<text x="${M.left - 6}" y="${top + 10}" text-anchor="end" font-size="11">${esc(fmt(hi))}</text>`,
      `<text x="${M.left - 6}" y="${top + PANEL_H}" text-anchor="end" font-size="11">${esc(fmt(lo))}</text>`,
      `<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${panel.points
        .map(([t, v]) => `${x(t).toFixed(1)},${y(v).toFixed(1)}`)
        .join(' ')}"/>`,
    )
    if (panel.fit !== undefined) {
      const { from, slope, intercept } = panel.fit
      parts.push(
        `<line x1="${x(from).toFixed(1)}" y1="${y(intercept + slope * from).toFixed(1)}" x2="${x(tMax).toFixed(1)}" y2="${y(intercept + slope * tMax).toFixed(1)}" stroke="#d62728" stroke-dasharray="5,4"/>`,
      )
    }
    if (i === panels.length - 1)
      parts.push(
        `<text x="${M.left + pw / 2}" y="${top + PANEL_H + 22}" text-anchor="middle" font-size="12">minutes (dashed: least-squares fit after warm-up)</text>`,
      )
  })
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${height}" viewBox="0 0 ${W} ${height}" font-family="sans-serif">
<rect width="100%" height="100%" fill="white"/>
${parts.join('\n')}
</svg>
`
}
