package hub_test

// The v1.1 hardening (contract: "v1.1 hardening"), one regression test per
// finding of the security review (issue 13) over real WebSockets: a frame
// that is not UTF-8 ends its sender with 1007 and reaches nobody; control
// characters in identifiers are bad_request; payloads keep their size; the
// history has byte budgets; joins have a rate; sessions have a maximum;
