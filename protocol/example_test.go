package protocol_test

import (
	"encoding/json"
	"fmt"

	"github.com/sessionhub/sessionhub/protocol"
)

func ExampleDecode() {
	m, err := protocol.Decode([]byte(`{"type":"cursor-update","data":{"line":12,"column":4,"file":"main.go"},"ref":"7"}`))
	if err != nil {
		fmt.Println(err)
		return
	}
	c := m.Payload.(*protocol.Cursor)
	fmt.Println(m.Type, m.Ref, c.Line, c.Column, c.File)

	_, err = protocol.Decode([]byte(`{"type":"cursor-update","data":{"line":-1,"column":4}}`))
	fmt.Println(err)
	// Output:
	// cursor-update 7 12 4 main.go
	// bad_request: data.line must be an integer from 0 to 10000000
}

func ExampleEncode() {
	b, err := protocol.Encode(protocol.TypeCursorMoved, "", protocol.CursorMoved{
		UserID: "u1",
		Cursor: protocol.Cursor{Line: 12, Column: 4},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(string(b))

	b, _ = protocol.Encode(protocol.TypeAck, "7", protocol.Ack{Offset: 3})
	fmt.Println(string(b))
	// Output:
	// {"type":"cursor-moved","data":{"userId":"u1","cursor":{"line":12,"column":4}}}
	// {"type":"ack","data":{"offset":3},"ref":"7"}
}

func ExampleEncodeError() {
	fmt.Println(string(protocol.EncodeError("7", protocol.Errorf(protocol.CodeNotInSession, "join a session first"))))
	// Output:
	// {"type":"error","data":{"code":"not_in_session","message":"join a session first"},"ref":"7"}
}

// A frame sent under BatchSubprotocol holds several messages, one a line;
// a client decodes each as a server message.
func ExampleSplitBatch() {
	frame := []byte(`{"type":"cursor-moved","data":{"userId":"u1","cursor":{"line":1,"column":2}}}` + "\n" +
		`{"type":"pong","ref":"7"}`)
	for msg := range protocol.SplitBatch(frame) {
		var env protocol.Envelope
		if err := json.Unmarshal(msg, &env); err != nil {
			fmt.Println(err)
			return
		}
		fmt.Printf("%s ref=%q\n", env.Type, env.Ref)
	}
	// Output:
	// cursor-moved ref=""
	// pong ref="7"
}
