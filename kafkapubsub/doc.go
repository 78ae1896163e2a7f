// Package kafkapubsub is a thin watermill Publisher and Subscriber over
// segmentio/kafka-go, plus the router that every orderflow consumer runs in.
//
// Its promises: Publish returns only after the broker acknowledged every
// message (by default from all in-sync replicas); a message's key decides its partition
// exactly as a Java client would (murmur2); a Subscriber delivers the messages
// of a partition one at a time, in offset order, and commits a message's offset
// only after that message was acked, so a consumer group never moves past a
// message that was not processed. Delivery is at least once: consumers must
// make duplicates harmless.
//
// It passes watermill's universal pub/sub test suite (pubsub/tests) against a
// real broker; see pubsub_test.go for the features it claims.
package kafkapubsub
