package protocol

import "unicode/utf8"

// ValidText reports whether s is valid UTF-8 with no control character
// (U+0000–U+001F, U+007F): the rule of the contract's "v1.1 hardening" for
// every identifier (userId, sub, sessionId, names, event, file) that reaches
// another client or Redis.
func ValidText(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return false
		}
	}
	return utf8.ValidString(s)
}
