// The node's own small images: the sandbox (pause) process containerd 2 needs and a probe for tests.
// No registry image can be pulled on the machines this project runs on, so both are built here.
module k8sauth.local/cluster/images

go 1.26.0
