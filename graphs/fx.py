def from_torch(model, example_input):
    raise NotImplementedError
