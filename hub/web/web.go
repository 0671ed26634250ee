// Package web holds the browser side of sessionhub, embedded in the hubd
// binary: the client module hub.js (with its TypeScript declarations
// hub.d.ts) and the demo page index.html. The hub serves them at GET
// /hub.js, GET /hub.d.ts and GET /.
package web

import "embed"

// FS holds hub.js, hub.d.ts and index.html.
//
//go:embed hub.js hub.d.ts index.html
var FS embed.FS
