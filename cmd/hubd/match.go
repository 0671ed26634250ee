package main

import (
	"path"
	"strings"
)

// pathMatch checks an --allowed-origins pattern the way the WebSocket
// library will use it.
func pathMatch(pattern string) (bool, error) {
	return path.Match(strings.ToLower(pattern), "")
}
