// Gradcheck and gradgradcheck of the Nn layers (float64) as functions of their input and of every
// parameter: the parameters are supplied through Binding, as a functional call supplies fast
// weights, so the check covers the layers' indirection too. Sizes, layer counts, directions and
// options are drawn from a case seed; replay a failure with [Property(Replay = "(..., ...)")] or a
// [Fact] calling Check(LayerGradCheckTests.LstmCase, new CaseSeed(...)).

using FsCheck.Xunit;
using Higher.Nn;

namespace Higher.GradCheck;

/// <summary>First and second derivatives of every layer with parameters, the recurrent ones included, on <see cref="Device"/>.</summary>
[Properties(MaxTest = 6, Arbitrary = [typeof(Arbitraries)], Replay = GradCheckSeeds.Replay)]
public abstract class LayerGradCheckTests
{
    /// <summary>Device the cases are created on.</summary>
    protected abstract Device Device { get; }

    private void Check(Func<CaseGen, LayerCase> build, CaseSeed seed)
    {
        var c = build(new CaseGen(seed.Value, Device));
        string name = $"{c.Name} with input {c.Input.Shape} on {Device} [case seed {seed.Value}]";
        Tensor[] inputs = [c.Input, .. c.Parameters];
        GradChecker.GradCheckMany(c.Run, inputs, name: name);
        GradChecker.GradGradCheckMany(c.Run, inputs, seed: seed.Value, name: name);
    }

    /// <summary>
    /// A module, an input, and values for its parameters. <see cref="Run"/> evaluates the module on
    /// inputs[0] with its parameters bound to inputs[1..] (in <see cref="Module.NamedParameterHandles"/> order).
    /// </summary>
    public sealed class LayerCase(string name, Module module, Tensor input, Func<Module, Tensor, Tensor[]> forward, CaseGen g, double scale = 0.6)
    {
        private readonly IReadOnlyList<(string Name, Parameter Parameter)> _handles = module.To(DType.Float64).To(g.Device).NamedParameterHandles();

        public string Name { get; } = name;

        public Tensor Input { get; } = input;

        public Tensor[] Parameters { get; } = module.NamedParameterHandles().Select(h => g.Normal(h.Parameter.Shape, scale)).ToArray();

        public Tensor[] Run(Tensor[] t)
        {
            var bound = new Dictionary<Parameter, Tensor>();
            for (int i = 0; i < _handles.Count; i++)
            {
                bound[_handles[i].Parameter] = t[i + 1];
            }
            using (Binding.Bind(bound))
            {
                return forward(module, t[0]);
            }
        }
    }

    private static Tensor[] Single(Module m, Tensor x) => [m.Forward(x)];

    public static LayerCase LinearCase(CaseGen g)
    {
        int inF = g.Int(1, 4), outF = g.Int(1, 3);
        bool bias = g.Chance(0.7);
        return new LayerCase($"Linear({inF}, {outF}, bias {bias})", new Linear(inF, outF, bias), g.Normal(new Shape(g.Int(1, 3), inF)), Single, g);
    }

    public static LayerCase LayerNormCase(CaseGen g)
    {
        int d = g.Int(2, 4);
        bool affine = g.Chance(0.7);
        return new LayerCase($"LayerNorm({d}, affine {affine})", new LayerNorm(d, elementwiseAffine: affine), g.Normal(new Shape(g.Int(1, 3), d)), Single, g);
    }

    public static LayerCase BatchNorm1dCase(CaseGen g)
    {
        int c = g.Int(1, 3);
        bool threeD = g.Chance(0.5);
        var x = threeD ? g.Normal(new Shape(g.Int(2, 3), c, g.Int(1, 2))) : g.Normal(new Shape(g.Int(2, 4), c));
        return new LayerCase($"BatchNorm1d({c}, training)", new BatchNorm1d(c), x, Single, g);
    }

    public static LayerCase EmbeddingCase(CaseGen g)
    {
        var embedding = new Embedding(g.Int(2, 4), g.Int(1, 3));
        var index = Tensor.FromArray(Enumerable.Range(0, 4).Select(_ => (long)g.Int(0, embedding.NumEmbeddings - 1)).ToArray(), new Shape(2, 2), g.Device);
        // The indices are captured; the float input scales the rows, and the squares make the second derivative non-zero.
        return new LayerCase($"Embedding({embedding.NumEmbeddings}, {embedding.EmbeddingDim})", embedding, g.Normal(new Shape(1)),
            (m, scale) => [m.Forward(index).Square() * scale], g);
    }

    public static LayerCase MlpCase(CaseGen g)
    {
        var mlp = new Sequential(new Linear(2, 3), g.Pick<Module>(new Tanh(), new Sigmoid(), new Gelu(), new Softplus(2, 1)), new Linear(3, 2));
        return new LayerCase($"Sequential(Linear, {mlp[1].GetType().Name}, Linear)", mlp, g.Normal(new Shape(g.Int(1, 2), 2)), Single, g);
    }

    private static Tensor Sequence(CaseGen g, int inputSize, bool batchFirst, out int batch)
    {
        int steps = g.Int(1, 3);
        batch = g.Int(1, 2);
        return batchFirst ? g.Normal(new Shape(batch, steps, inputSize)) : g.Normal(new Shape(steps, batch, inputSize));
    }

    public static LayerCase RnnCase(CaseGen g)
    {
        int layers = g.Int(1, 2);
        bool relu = g.Chance(0.4), bias = g.Chance(0.7), batchFirst = g.Chance(0.5), bidirectional = g.Chance(0.4);
        var rnn = new Rnn(2, 2, layers, relu, bias, batchFirst, bidirectional: bidirectional);
        var x = Sequence(g, 2, batchFirst, out int batch);
        var h0 = g.Normal(new Shape(layers * rnn.Directions, batch, 2), 0.5);
        return new LayerCase($"Rnn(layers {layers}, relu {relu}, bias {bias}, batchFirst {batchFirst}, bidirectional {bidirectional})", rnn, x,
            (m, input) =>
            {
                var (output, hn) = ((Rnn)m).Forward(input, h0);
                return [output, hn];
            }, g);
    }

    public static LayerCase GruCase(CaseGen g)
    {
        int layers = g.Int(1, 2);
        bool bias = g.Chance(0.7), batchFirst = g.Chance(0.5), bidirectional = g.Chance(0.4);
        var gru = new Gru(2, 2, layers, bias, batchFirst, bidirectional: bidirectional);
        var x = Sequence(g, 2, batchFirst, out _);
        return new LayerCase($"Gru(layers {layers}, bias {bias}, batchFirst {batchFirst}, bidirectional {bidirectional})", gru, x,
            (m, input) =>
            {
                var (output, hn) = ((Gru)m).Forward(input, null);
                return [output, hn];
            }, g);
    }

    public static LayerCase LstmCase(CaseGen g)
    {
        int layers = g.Int(1, 2);
        bool bias = g.Chance(0.7), batchFirst = g.Chance(0.5), bidirectional = g.Chance(0.4);
        var lstm = new Lstm(2, 2, layers, bias, batchFirst, bidirectional: bidirectional);
        var x = Sequence(g, 2, batchFirst, out int batch);
        var state = new Shape(layers * lstm.Directions, batch, 2);
        var h0 = g.Normal(state, 0.5);
        var c0 = g.Normal(state, 0.5);
        return new LayerCase($"Lstm(layers {layers}, bias {bias}, batchFirst {batchFirst}, bidirectional {bidirectional})", lstm, x,
            (m, input) =>
            {
                var (output, hn, cn) = ((Lstm)m).Forward(input, h0, c0);
                return [output, hn, cn];
            }, g);
    }

    public static LayerCase CellCase(CaseGen g)
    {
        int batch = g.Int(1, 2);
        var x = g.Normal(new Shape(batch, 2));
        var h = g.Normal(new Shape(batch, 3), 0.5);
        var c = g.Normal(new Shape(batch, 3), 0.5);
        return g.Int(0, 2) switch
        {
            0 => new LayerCase("RnnCell(2, 3)", new RnnCell(2, 3), x, (m, input) => [((RnnCell)m).Forward(input, h)], g),
            1 => new LayerCase("GruCell(2, 3)", new GruCell(2, 3), x, (m, input) => [((GruCell)m).Forward(input, h)], g),
            _ => new LayerCase("LstmCell(2, 3)", new LstmCell(2, 3), x, (m, input) =>
            {
                var (hNext, cNext) = ((LstmCell)m).Forward(input, h, c);
                return [hNext, cNext];
            }, g),
        };
    }

    [Property]
    public void LinearDerivatives(CaseSeed seed) => Check(LinearCase, seed);

    [Property]
    public void LayerNormDerivatives(CaseSeed seed) => Check(LayerNormCase, seed);

    [Property]
    public void BatchNorm1dDerivatives(CaseSeed seed) => Check(BatchNorm1dCase, seed);

    [Property]
    public void EmbeddingDerivatives(CaseSeed seed) => Check(EmbeddingCase, seed);

    [Property]
    public void MlpDerivatives(CaseSeed seed) => Check(MlpCase, seed);

    [Property(MaxTest = 4)]
    public void RnnDerivatives(CaseSeed seed) => Check(RnnCase, seed);

    [Property(MaxTest = 4)]
    public void GruDerivatives(CaseSeed seed) => Check(GruCase, seed);

    [Property(MaxTest = 4)]
    public void LstmDerivatives(CaseSeed seed) => Check(LstmCase, seed);

    [Property]
    public void CellsDerivatives(CaseSeed seed) => Check(CellCase, seed);
}

/// <summary>The layer gradchecks on the CPU.</summary>
public sealed class CpuLayerGradCheckTests : LayerGradCheckTests
{
    protected override Device Device => Device.Cpu;
}
