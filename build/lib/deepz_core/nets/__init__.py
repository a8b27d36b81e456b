"""Networks (E20 Fig. 1): natively batched ensemble layers, the mixture-density head, the DEEPZ
model and the App. E classifier."""
