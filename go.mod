module conclave

go 1.26
