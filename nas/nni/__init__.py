"""NNI 3.0 adapters: the hwnas space as an NNI model space, a latency profiler over the one
latency matrix, and the ProxylessNAS strategy run through NNI. NNI is imported lazily."""
