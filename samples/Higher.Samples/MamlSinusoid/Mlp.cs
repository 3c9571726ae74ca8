using Higher.Nn;

namespace Higher.Samples.MamlSinusoid;

/// <summary>
/// A 1-40-40-1 ReLU network written as a user would: parameters registered on a Module and read
/// through Parameter.Value, which is all it takes to run under functional fast weights.
/// Initialised as PyTorch's Linear: U(-1/√fan_in, 1/√fan_in) for weights and biases. In a task-batched
/// inner loop (<see cref="Binding.Tasks"/> &gt; 0) the weights are [T, out, in] and the input [T, K, in]:
/// the same layer as a batched matrix product, which is all a module of one's own needs to batch tasks.
/// </summary>
public sealed class Mlp : Module
{
    private readonly Parameter[] _weights;
    private readonly Parameter[] _biases;

    public Mlp(int[] sizes, Generator g, DType dtype = DType.Float32)
    {
        _weights = new Parameter[sizes.Length - 1];
        _biases = new Parameter[sizes.Length - 1];
        for (int i = 0; i < _weights.Length; i++)
        {
            double bound = 1 / Math.Sqrt(sizes[i]);
            _weights[i] = RegisterParameter($"w{i}", Tensor.Uniform([sizes[i + 1], sizes[i]], -bound, bound, dtype, g))!;
            _biases[i] = RegisterParameter($"b{i}", Tensor.Uniform([sizes[i + 1]], -bound, bound, dtype, g))!;
        }
    }

    public override Tensor Forward(Tensor input)
    {
        var h = input;
        for (int i = 0; i < _weights.Length; i++)
        {
            h = Binding.Tasks > 0
                ? Tensor.MatMul(h, _weights[i].Value.MT) + _biases[i].Value.Unsqueeze(1)
                : Tensor.Linear(h, _weights[i].Value, _biases[i].Value);
            if (i < _weights.Length - 1)
            {
                h = h.Relu();
            }
        }
        return h;
    }
}
