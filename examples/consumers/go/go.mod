module shardring.io/examples/queue-consumer

go 1.22

require shardring.io/ring v0.0.0

replace shardring.io/ring => ../../../clients/go
