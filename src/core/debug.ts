/**
 * The one `NODE_DEBUG=wayfind` logger every area writes to (`debuglog` caches per section, but one
 * module keeps the section name in one place). Never pass a token, a password or request headers.
 */
import { debuglog } from 'node:util'

export const debug = debuglog('wayfind')
