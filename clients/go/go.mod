module shardring.io/ring

go 1.22
