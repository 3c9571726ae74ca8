// Gradcheck and gradgradcheck (float64) of the task-batched layer forms (issue 11): weights [T, ...]
// bound with Binding.Bind(..., tasks: T), inputs [T, B, ...], as InnerLoop.CreateBatched runs them.
// Derivatives are checked against the input and every per-task weight. Sizes, task counts and options
// are drawn from a case seed; replay a failure with [Property(Replay = "(..., ...)")].

using FsCheck.Xunit;
using Higher.Nn;

namespace Higher.GradCheck;

/// <summary>First and second derivatives of the task-batched forms of the layers with weights, on the CPU.</summary>
[Properties(MaxTest = 5, Arbitrary = [typeof(Arbitraries)], Replay = GradCheckSeeds.Replay)]
public sealed class TaskBatchedLayerGradCheckTests
{
    private static readonly Device Device = Device.Cpu;

    private static void Check(Func<CaseGen, BatchedCase> build, CaseSeed seed)
    {
        var c = build(new CaseGen(seed.Value, Device));
        string name = $"{c.Name}, task-batched over {c.Tasks} tasks, with input {c.Input.Shape} [case seed {seed.Value}]";
        Tensor[] inputs = [c.Input, .. c.Parameters];
        GradChecker.GradCheckMany(c.Run, inputs, name: name);
        GradChecker.GradGradCheckMany(c.Run, inputs, seed: seed.Value, name: name);
    }

    /// <summary>
    /// A module, a task-batched input, and per-task values [T, ...] of its parameters; <see cref="Run"/>
    /// evaluates the module on inputs[0] with its parameters bound to inputs[1..] and its buffers to
    /// per-task copies (fresh at every call, so batch norm's writes never leak between evaluations).
    /// </summary>
    public sealed class BatchedCase(string name, int tasks, Module module, Tensor input, Func<Module, Tensor, Tensor[]> forward, CaseGen g, double scale = 0.6)
    {
        private readonly IReadOnlyList<(string Name, Parameter Parameter)> _handles = module.To(DType.Float64).To(g.Device).NamedParameterHandles();
        private readonly IReadOnlyList<(string Name, ModuleBuffer Buffer)> _buffers = module.NamedBufferHandles();

        public string Name { get; } = name;

        public int Tasks { get; } = tasks;

        public Tensor Input { get; } = input;

        public Tensor[] Parameters { get; } = module.NamedParameterHandles().Select(h => g.Normal(new Shape([tasks, .. h.Parameter.Shape.ToArray()]), scale)).ToArray();

        public Tensor[] Run(Tensor[] t)
        {
            var bound = new Dictionary<Parameter, Tensor>();
            for (int i = 0; i < _handles.Count; i++)
            {
                bound[_handles[i].Parameter] = t[i + 1];
            }
            var buffers = new Dictionary<ModuleBuffer, Tensor?>();
            foreach (var (_, b) in _buffers)
            {
                var data = b.Data!;
                buffers[b] = data.Unsqueeze(0).Expand([Tasks, .. data.Shape.ToArray()]).Detach();
            }
            using (Binding.Bind(bound, buffers, Tasks))
            {
                return forward(module, t[0]);
            }
        }
    }

    private static Tensor[] Single(Module m, Tensor x) => [m.Forward(x)];

    public static BatchedCase LinearCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), inF = g.Int(1, 3), outF = g.Int(1, 3);
        bool bias = g.Chance(0.7);
        return new BatchedCase($"Linear({inF}, {outF}, bias {bias})", tasks, new Linear(inF, outF, bias), g.Normal(new Shape(tasks, g.Int(1, 3), inF)), Single, g);
    }

    public static BatchedCase Conv2dCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), groups = g.Int(1, 2), stride = g.Int(1, 2);
        int cin = 2 * groups, cout = groups * g.Int(1, 2);
        bool bias = g.Chance(0.7), single = g.Chance(0.3);
        var conv = new Conv2d(cin, cout, 2, stride: stride, padding: g.Int(0, 1), groups: groups, bias: bias);
        var x = single ? g.Normal(new Shape(tasks, cin, 3, 3)) : g.Normal(new Shape(tasks, g.Int(1, 2), cin, 3, 3));
        return new BatchedCase($"Conv2d({cin}, {cout}, 2, stride {stride}, groups {groups}, bias {bias})", tasks, conv, x, Single, g);
    }

    public static BatchedCase ConvTranspose2dCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), groups = g.Int(1, 2);
        int cin = 2 * groups, cout = groups * g.Int(1, 2);
        var conv = new ConvTranspose2d(cin, cout, 2, stride: g.Int(1, 2), groups: groups, bias: g.Chance(0.7));
        return new BatchedCase($"ConvTranspose2d({cin}, {cout}, 2, groups {groups})", tasks, conv, g.Normal(new Shape(tasks, g.Int(1, 2), cin, 2, 2)), Single, g);
    }

    public static BatchedCase BatchNorm2dCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), c = g.Int(1, 2);
        return new BatchedCase($"BatchNorm2d({c}, training)", tasks, new BatchNorm2d(c), g.Normal(new Shape(tasks, g.Int(2, 3), c, 2, 2)), Single, g);
    }

    public static BatchedCase BatchNorm1dCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), c = g.Int(1, 3);
        return new BatchedCase($"BatchNorm1d({c}, training)", tasks, new BatchNorm1d(c), g.Normal(new Shape(tasks, g.Int(2, 4), c)), Single, g);
    }

    public static BatchedCase LayerNormCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), d = g.Int(2, 4);
        return new BatchedCase($"LayerNorm({d})", tasks, new LayerNorm(d), g.Normal(new Shape(tasks, g.Int(1, 3), d)), Single, g);
    }

    public static BatchedCase EmbeddingCase(CaseGen g)
    {
        int tasks = g.Int(1, 3);
        var embedding = new Embedding(g.Int(2, 4), g.Int(1, 3));
        var index = Tensor.FromArray(Enumerable.Range(0, tasks * 3).Select(_ => (long)g.Int(0, embedding.NumEmbeddings - 1)).ToArray(), new Shape(tasks, 3), g.Device);
        // The indices are captured; the float input scales each task's rows, and the squares make the second derivative non-zero.
        return new BatchedCase($"Embedding({embedding.NumEmbeddings}, {embedding.EmbeddingDim})", tasks, embedding, g.Normal(new Shape(tasks, 1, 1)),
            (m, scale) => [m.Forward(index).Square() * scale], g);
    }

    public static BatchedCase LstmCase(CaseGen g)
    {
        int tasks = g.Int(1, 2), layers = g.Int(1, 2), steps = g.Int(1, 3), batch = g.Int(1, 2);
        bool batchFirst = g.Chance(0.5), bidirectional = g.Chance(0.4);
        var lstm = new Lstm(2, 2, layers, g.Chance(0.7), batchFirst, bidirectional: bidirectional);
        var x = batchFirst ? g.Normal(new Shape(tasks, batch, steps, 2)) : g.Normal(new Shape(tasks, steps, batch, 2));
        var state = new Shape(tasks, layers * lstm.Directions, batch, 2);
        var h0 = g.Normal(state, 0.5);
        var c0 = g.Normal(state, 0.5);
        return new BatchedCase($"Lstm(layers {layers}, batchFirst {batchFirst}, bidirectional {bidirectional})", tasks, lstm, x,
            (m, input) =>
            {
                var (output, hn, cn) = ((Lstm)m).Forward(input, h0, c0);
                return [output, hn, cn];
            }, g);
    }

    public static BatchedCase GruCase(CaseGen g)
    {
        int tasks = g.Int(1, 2), layers = g.Int(1, 2);
        var gru = new Gru(2, 2, layers, bidirectional: g.Chance(0.4));
        var x = g.Chance(0.3) ? g.Normal(new Shape(tasks, g.Int(1, 3), 2)) : g.Normal(new Shape(tasks, g.Int(1, 3), g.Int(1, 2), 2));
        return new BatchedCase($"Gru(layers {layers}, input rank {x.Rank})", tasks, gru, x,
            (m, input) =>
            {
                var (output, hn) = ((Gru)m).Forward(input, null);
                return [output, hn];
            }, g);
    }

    public static BatchedCase CellCase(CaseGen g)
    {
        int tasks = g.Int(1, 3), batch = g.Int(1, 2);
        var x = g.Normal(new Shape(tasks, batch, 2));
        var h = g.Normal(new Shape(tasks, batch, 3), 0.5);
        var c = g.Normal(new Shape(tasks, batch, 3), 0.5);
        return g.Int(0, 2) switch
        {
            0 => new BatchedCase("RnnCell(2, 3)", tasks, new RnnCell(2, 3), x, (m, input) => [((RnnCell)m).Forward(input, h)], g),
            1 => new BatchedCase("GruCell(2, 3)", tasks, new GruCell(2, 3), x, (m, input) => [((GruCell)m).Forward(input, h)], g),
            _ => new BatchedCase("LstmCell(2, 3)", tasks, new LstmCell(2, 3), x, (m, input) =>
            {
                var (hNext, cNext) = ((LstmCell)m).Forward(input, h, c);
                return [hNext, cNext];
            }, g),
        };
    }

    [Property]
    public void LinearDerivatives(CaseSeed seed) => Check(LinearCase, seed);

    [Property]
    public void Conv2dDerivatives(CaseSeed seed) => Check(Conv2dCase, seed);

    [Property]
    public void ConvTranspose2dDerivatives(CaseSeed seed) => Check(ConvTranspose2dCase, seed);

    [Property]
    public void BatchNorm2dDerivatives(CaseSeed seed) => Check(BatchNorm2dCase, seed);

    [Property]
    public void BatchNorm1dDerivatives(CaseSeed seed) => Check(BatchNorm1dCase, seed);

    [Property]
    public void LayerNormDerivatives(CaseSeed seed) => Check(LayerNormCase, seed);

    [Property]
    public void EmbeddingDerivatives(CaseSeed seed) => Check(EmbeddingCase, seed);

    [Property(MaxTest = 3)]
    public void LstmDerivatives(CaseSeed seed) => Check(LstmCase, seed);

    [Property(MaxTest = 3)]
    public void GruDerivatives(CaseSeed seed) => Check(GruCase, seed);

    [Property]
    public void CellsDerivatives(CaseSeed seed) => Check(CellCase, seed);
}
