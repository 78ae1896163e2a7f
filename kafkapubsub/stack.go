package kafkapubsub

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/orderflow/orderflow/internal/stack"
)

// growStack is the outermost middleware of NewRouter's routers: watermill
// handles each message on a goroutine of its own, whose stack it grows in
// one step (see package stack).
func growStack(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		stack.Reserve()
		return h(msg)
	}
}
