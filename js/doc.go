// Package js holds no Go code of its own: it is the npm workspace of
// sessionhub's JavaScript packages (@sessionhub/client, @sessionhub/react and
// the classroom example), and its test drives their suite, so that `go test
// ./...` runs every test, Go and JavaScript.
package js
