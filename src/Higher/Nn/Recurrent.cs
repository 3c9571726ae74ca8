using System.Globalization;

namespace Higher.Nn;

/// <summary>The recurrence of a <see cref="RecurrentBase"/> layer.</summary>
public enum RecurrentMode
{
    /// <summary>h' = tanh(W_ih x + b_ih + W_hh h + b_hh).</summary>
    RnnTanh,
    /// <summary>h' = relu(W_ih x + b_ih + W_hh h + b_hh).</summary>
    RnnRelu,
    /// <summary>Long short-term memory, gates i, f, g, o.</summary>
    Lstm,
    /// <summary>Gated recurrent unit, gates r, z, n.</summary>
    Gru,
}

/// <summary>
/// The cell updates shared by the recurrent layers and their cells, written once in
/// differentiable ops. <c>gi</c> = W_ih·x + b_ih and <c>gh</c> = W_hh·h + b_hh, both [N, gates·H].
/// </summary>
internal static class Cells
{
    public static int GateCount(RecurrentMode mode) => mode switch
    {
        RecurrentMode.Lstm => 4,
        RecurrentMode.Gru => 3,
        _ => 1,
    };

    /// <summary>Elman cell: h' = act(gi + gh).</summary>
    public static Tensor Rnn(Tensor gi, Tensor gh, RecurrentMode mode)
    {
        var pre = gh + gi;
        return mode == RecurrentMode.RnnRelu ? pre.Relu() : pre.Tanh();
    }

    /// <summary>LSTM cell: i, f, o = σ(·), g = tanh(·); c' = f·c + i·g; h' = o·tanh(c').</summary>
    public static (Tensor H, Tensor C) Lstm(Tensor gi, Tensor gh, Tensor c, int hidden)
    {
        var gates = gh + gi;
        var input = gates.Narrow(-1, 0, hidden).Sigmoid();
        var forget = gates.Narrow(-1, hidden, hidden).Sigmoid();
        var cell = gates.Narrow(-1, 2 * hidden, hidden).Tanh();
        var output = gates.Narrow(-1, 3 * hidden, hidden).Sigmoid();
        var cNext = forget * c + input * cell;
        return (output * cNext.Tanh(), cNext);
    }

    /// <summary>GRU cell: r, z = σ(·); n = tanh(gi_n + r·gh_n); h' = (h - n)·z + n = (1 - z)·n + z·h.</summary>
    public static Tensor Gru(Tensor gi, Tensor gh, Tensor h, int hidden)
    {
        var reset = (gh.Narrow(-1, 0, hidden) + gi.Narrow(-1, 0, hidden)).Sigmoid();
        var update = (gh.Narrow(-1, hidden, hidden) + gi.Narrow(-1, hidden, hidden)).Sigmoid();
        var candidate = (gi.Narrow(-1, 2 * hidden, hidden) + gh.Narrow(-1, 2 * hidden, hidden) * reset).Tanh();
        return (h - candidate) * update + candidate;
    }
}

/// <summary>
/// Multi-layer recurrent networks (torch.nn.RNN, LSTM, GRU) with PyTorch's parameter names
/// (weight_ih_l{k}, weight_hh_l{k}, bias_ih_l{k}, bias_hh_l{k}, suffix "_reverse" for the
/// backward direction), gate orders (LSTM i, f, g, o; GRU r, z, n) and initialization
/// U(-1/√H, 1/√H). Inputs are [L, N, H_in] ([N, L, H_in] with batchFirst) or unbatched [L, H_in];
/// initial states are [layers·directions, N, H] (or [layers·directions, H] unbatched), zeros when
/// omitted. The input projection of a whole sequence is one matrix product; the recurrence then
/// steps through time. Task-batched (<see cref="Binding.Tasks"/> = T) every tensor gains a leading task
/// dimension: inputs [T, L, N, H_in] ([T, N, L, H_in] with batchFirst, [T, L, H_in] unbatched), states
/// [T, layers·directions, N, H], weights [T, ...]; each product is one batched GEMM over the tasks.
/// </summary>
public abstract class RecurrentBase : Module
{
    private const int WeightIh = 0, WeightHh = 1, BiasIh = 2, BiasHh = 3;
    private readonly Parameter?[][] _weights;
    private readonly Dictionary<string, (int Slot, int Kind)> _names = [];

    /// <summary>Builds the layer's parameters, drawing them from <paramref name="generator"/>.</summary>
    protected RecurrentBase(RecurrentMode mode, int inputSize, int hiddenSize, int numLayers, bool bias, bool batchFirst, double dropout,
        bool bidirectional, Generator? generator)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hiddenSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(numLayers);
        if (!(dropout is >= 0 and <= 1))
        {
            throw new ArgumentOutOfRangeException(nameof(dropout), dropout, "Dropout probability has to be between 0 and 1.");
        }
        Mode = mode;
        InputSize = inputSize;
        HiddenSize = hiddenSize;
        NumLayers = numLayers;
        HasBias = bias;
        BatchFirst = batchFirst;
        Dropout = dropout;
        Bidirectional = bidirectional;
        Generator = generator;
        int gates = Cells.GateCount(mode) * hiddenSize;
        double bound = 1 / Math.Sqrt(hiddenSize);
        _weights = new Parameter?[numLayers * Directions][];
        for (int layer = 0; layer < numLayers; layer++)
        {
            int layerInput = layer == 0 ? inputSize : hiddenSize * Directions;
            for (int dir = 0; dir < Directions; dir++)
            {
                int slot = layer * Directions + dir;
                string suffix = "_l" + layer.ToString(CultureInfo.InvariantCulture) + (dir == 1 ? "_reverse" : "");
                var handles = new Parameter?[4];
                handles[WeightIh] = Register("weight_ih" + suffix, [gates, layerInput], slot, WeightIh);
                handles[WeightHh] = Register("weight_hh" + suffix, [gates, hiddenSize], slot, WeightHh);
                if (bias)
                {
                    handles[BiasIh] = Register("bias_ih" + suffix, [gates], slot, BiasIh);
                    handles[BiasHh] = Register("bias_hh" + suffix, [gates], slot, BiasHh);
                }
                _weights[slot] = handles;
            }
        }

        Parameter Register(string name, int[] shape, int slot, int kind)
        {
            _names[name] = (slot, kind);
            return RegisterParameter(name, Tensor.Uniform(shape, -bound, bound, generator: generator))!;
        }
    }

    /// <summary>The recurrence.</summary>
    public RecurrentMode Mode { get; }

    /// <summary>H_in.</summary>
    public int InputSize { get; }

    /// <summary>H.</summary>
    public int HiddenSize { get; }

    /// <summary>Number of stacked layers.</summary>
    public int NumLayers { get; }

    /// <summary>Whether the layers have biases.</summary>
    public bool HasBias { get; }

    /// <summary>Inputs and outputs are [N, L, ·] instead of [L, N, ·].</summary>
    public bool BatchFirst { get; }

    /// <summary>Dropout probability applied to the outputs of every layer but the last, in training mode.</summary>
    public double Dropout { get; }

    /// <summary>Whether each layer also runs backward in time (outputs concatenate both directions).</summary>
    public bool Bidirectional { get; }

    /// <summary>Generator of the inter-layer dropout masks (null: <see cref="Higher.Generator.Default"/>).</summary>
    public Generator? Generator { get; }

    /// <inheritdoc/>
    protected override string ExtraRepr()
    {
        var s = $"{InputSize}, {HiddenSize}";
        if (NumLayers != 1)
        {
            s += $", num_layers={NumLayers}";
        }
        if (!HasBias)
        {
            s += ", bias=False";
        }
        if (BatchFirst)
        {
            s += ", batch_first=True";
        }
        if (Dropout != 0)
        {
            s += $", dropout={Py(Dropout)}";
        }
        if (Bidirectional)
        {
            s += ", bidirectional=True";
        }
        return s;
    }

    /// <summary>1, or 2 when bidirectional.</summary>
    public int Directions => Bidirectional ? 2 : 1;

    /// <summary>The output sequence only (so the layer can sit in a <see cref="Sequential"/>).</summary>
    public override Tensor Forward(Tensor input) => Run(input, null, null).Output;

    /// <summary>Runs the layers: the output sequence, the final hidden states and (LSTM) the final cell states.</summary>
    protected (Tensor Output, Tensor HN, Tensor? CN) Run(Tensor input, Tensor? h0, Tensor? c0)
    {
        ArgumentNullException.ThrowIfNull(input);
        int tasks = Binding.Tasks;
        // Task-batched, every axis below moves one place to the right of the task dimension.
        int ta = tasks > 0 ? 1 : 0;
        bool batched = input.Rank == 3 + ta;
        if ((input.Rank != 2 + ta && input.Rank != 3 + ta) || input.Shape[-1] != InputSize || (tasks > 0 && input.Shape[0] != tasks))
        {
            string lead = tasks > 0 ? $"T={tasks}, " : "";
            throw new ArgumentException(
                $"{GetType().Name}{(tasks > 0 ? $", task-batched over {tasks} tasks," : ":")} expected input [{lead}L, N, {InputSize}]{(BatchFirst ? $" (batch first: [{lead}N, L, {InputSize}])" : "")} or unbatched [{lead}L, {InputSize}]; got {input.Shape}.", nameof(input));
        }
        var x = batched ? (BatchFirst ? input.Transpose(ta, ta + 1) : input) : input.Unsqueeze(ta + 1);
        int steps = x.Shape[ta], batch = x.Shape[ta + 1];
        if (steps == 0)
        {
            throw new ArgumentException($"{GetType().Name}: input {input.Shape} is a sequence of length 0; a recurrent layer needs at least one step.", nameof(input));
        }
        h0 = InitialState(h0, batched, batch, x, "h0", tasks);
        c0 = Mode == RecurrentMode.Lstm ? InitialState(c0, batched, batch, x, "c0", tasks) : null;
        var finalH = new List<Tensor>();
        var finalC = new List<Tensor>();
        for (int layer = 0; layer < NumLayers; layer++)
        {
            var outputs = new Tensor[Directions];
            for (int dir = 0; dir < Directions; dir++)
            {
                int slot = layer * Directions + dir;
                var (sequence, h, c) = RunDirection(x, slot, dir == 1, h0.Select(ta, slot), c0?.Select(ta, slot), steps, tasks);
                outputs[dir] = sequence;
                finalH.Add(h);
                if (c is not null)
                {
                    finalC.Add(c);
                }
            }
            x = Directions == 1 ? outputs[0] : Tensor.Cat(outputs, 2 + ta);
            if (layer < NumLayers - 1)
            {
                x = Nn.Dropout.Apply(x, Dropout, Training, Generator);
            }
        }
        var hn = Tensor.Stack(finalH, ta);
        var cn = finalC.Count > 0 ? Tensor.Stack(finalC, ta) : null;
        if (!batched)
        {
            return (x.Squeeze(ta + 1), hn.Squeeze(ta + 1), cn?.Squeeze(ta + 1));
        }
        return (BatchFirst ? x.Transpose(ta, ta + 1) : x, hn, cn);
    }

    private Tensor InitialState(Tensor? state, bool batched, int batch, Tensor like, string name, int tasks)
    {
        int layers = NumLayers * Directions;
        int[] lead = tasks > 0 ? [tasks] : [];
        if (state is null)
        {
            return Tensor.Zeros([.. lead, layers, batch, HiddenSize], like.DType, like.Device);
        }
        Shape expected = batched ? new Shape([.. lead, layers, batch, HiddenSize]) : new Shape([.. lead, layers, HiddenSize]);
        if (state.Shape != expected)
        {
            throw new ArgumentException($"{GetType().Name}: expected {name} of shape {expected}{(tasks > 0 ? $" (task-batched over {tasks} tasks)" : "")}; got {state.Shape}.", name);
        }
        CheckStateLike(state, like, name);
        return batched ? state : state.Unsqueeze(lead.Length + 1);
    }

    private void CheckStateLike(Tensor state, Tensor like, string name)
    {
        if (state.DType != like.DType || state.Device != like.Device)
        {
            throw new ArgumentException($"{GetType().Name}: {name} ({state.Describe()} on {state.Device}) must have the input's dtype and device ({like.DType.Name()} on {like.Device}).", name);
        }
    }

    private (Tensor Sequence, Tensor H, Tensor? C) RunDirection(Tensor x, int slot, bool reverse, Tensor h, Tensor? c, int steps, int tasks)
    {
        var w = _weights[slot];
        var weightHh = w[WeightHh]!.Value;
        var biasHh = w[BiasHh]?.Value;
        int ta = tasks > 0 ? 1 : 0;
        var projected = Project(x, w[WeightIh]!.Value, w[BiasIh]?.Value, tasks);
        var outputs = new Tensor[steps];
        for (int i = 0; i < steps; i++)
        {
            int t = reverse ? steps - 1 - i : i;
            var gi = projected.Select(ta, t);
            var gh = Project(h, weightHh, biasHh, tasks);
            switch (Mode)
            {
                case RecurrentMode.Lstm:
                    (h, c) = Cells.Lstm(gi, gh, c!, HiddenSize);
                    break;
                case RecurrentMode.Gru:
                    h = Cells.Gru(gi, gh, h, HiddenSize);
                    break;
                default:
                    h = Cells.Rnn(gi, gh, Mode);
                    break;
            }
            outputs[t] = h;
        }
        return (Tensor.Stack(outputs, ta), h, c);
    }

    private Tensor Project(Tensor x, Tensor weight, Tensor? bias, int tasks) =>
        tasks > 0 ? TaskBatch.Linear(GetType().Name, x, weight, bias) : Tensor.Linear(x, weight, bias);

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        if (_names.TryGetValue(name, out var at))
        {
            if (parameter is null && at.Kind is WeightIh or WeightHh)
            {
                throw new ArgumentNullException(nameof(parameter), $"{GetType().Name} needs its weight {name}.");
            }
            _weights[at.Slot][at.Kind] = parameter;
        }
    }
}

/// <summary>Elman RNN (torch.nn.RNN): h_t = act(W_ih x_t + b_ih + W_hh h_{t-1} + b_hh), act = tanh or relu.</summary>
public sealed class Rnn : RecurrentBase
{
    /// <summary>A stack of <paramref name="numLayers"/> RNN layers.</summary>
    public Rnn(int inputSize, int hiddenSize, int numLayers = 1, bool relu = false, bool bias = true, bool batchFirst = false,
        double dropout = 0, bool bidirectional = false, Generator? generator = null)
        : base(relu ? RecurrentMode.RnnRelu : RecurrentMode.RnnTanh, inputSize, hiddenSize, numLayers, bias, batchFirst, dropout, bidirectional, generator)
    {
    }

    /// <summary>The output sequence and the final hidden states h_n.</summary>
    public (Tensor Output, Tensor HN) Forward(Tensor input, Tensor? h0)
    {
        var (output, hn, _) = Run(input, h0, null);
        return (output, hn);
    }
}

/// <summary>
/// Gated recurrent unit (torch.nn.GRU): r = σ(W_ir x + b_ir + W_hr h + b_hr), z likewise,
/// n = tanh(W_in x + b_in + r·(W_hn h + b_hn)), h' = (1 - z)·n + z·h.
/// </summary>
public sealed class Gru : RecurrentBase
{
    /// <summary>A stack of <paramref name="numLayers"/> GRU layers.</summary>
    public Gru(int inputSize, int hiddenSize, int numLayers = 1, bool bias = true, bool batchFirst = false,
        double dropout = 0, bool bidirectional = false, Generator? generator = null)
        : base(RecurrentMode.Gru, inputSize, hiddenSize, numLayers, bias, batchFirst, dropout, bidirectional, generator)
    {
    }

    /// <summary>The output sequence and the final hidden states h_n.</summary>
    public (Tensor Output, Tensor HN) Forward(Tensor input, Tensor? h0)
    {
        var (output, hn, _) = Run(input, h0, null);
        return (output, hn);
    }
}

/// <summary>
/// Long short-term memory (torch.nn.LSTM): gates i, f, g, o from W_ih x + b_ih + W_hh h + b_hh;
/// c' = σ(f)·c + σ(i)·tanh(g); h' = σ(o)·tanh(c').
/// </summary>
public sealed class Lstm : RecurrentBase
{
    /// <summary>A stack of <paramref name="numLayers"/> LSTM layers.</summary>
    public Lstm(int inputSize, int hiddenSize, int numLayers = 1, bool bias = true, bool batchFirst = false,
        double dropout = 0, bool bidirectional = false, Generator? generator = null)
        : base(RecurrentMode.Lstm, inputSize, hiddenSize, numLayers, bias, batchFirst, dropout, bidirectional, generator)
    {
    }

    /// <summary>The output sequence, the final hidden states h_n and the final cell states c_n.</summary>
    public (Tensor Output, Tensor HN, Tensor CN) Forward(Tensor input, Tensor? h0, Tensor? c0)
    {
        var (output, hn, cn) = Run(input, h0, c0);
        return (output, hn, cn!);
    }
}

/// <summary>Base of the single-step cells: weight_ih [gates·H, H_in], weight_hh [gates·H, H], bias_ih, bias_hh, all U(-1/√H, 1/√H).</summary>
public abstract class RecurrentCellBase : Module
{
    private Parameter _weightIh, _weightHh;
    private Parameter? _biasIh, _biasHh;

    /// <summary>Builds the cell's parameters, drawing them from <paramref name="generator"/>.</summary>
    protected RecurrentCellBase(RecurrentMode mode, int inputSize, int hiddenSize, bool bias, Generator? generator)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(inputSize);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(hiddenSize);
        Mode = mode;
        InputSize = inputSize;
        HiddenSize = hiddenSize;
        int gates = Cells.GateCount(mode) * hiddenSize;
        double bound = 1 / Math.Sqrt(hiddenSize);
        _weightIh = RegisterParameter("weight_ih", Tensor.Uniform([gates, inputSize], -bound, bound, generator: generator))!;
        _weightHh = RegisterParameter("weight_hh", Tensor.Uniform([gates, hiddenSize], -bound, bound, generator: generator))!;
        _biasIh = RegisterParameter("bias_ih", bias ? Tensor.Uniform([gates], -bound, bound, generator: generator) : null);
        _biasHh = RegisterParameter("bias_hh", bias ? Tensor.Uniform([gates], -bound, bound, generator: generator) : null);
    }

    /// <summary>The recurrence.</summary>
    public RecurrentMode Mode { get; }

    /// <summary>H_in.</summary>
    public int InputSize { get; }

    /// <summary>H.</summary>
    public int HiddenSize { get; }

    /// <summary>(W_ih·x + b_ih, W_hh·h + b_hh) for input [N, H_in] and state [N, H] (task-batched: [T, N, ·], one batched GEMM each).</summary>
    private protected (Tensor Gi, Tensor Gh) Project(Tensor input, Tensor h) => Binding.Tasks > 0
        ? (TaskBatch.Linear(GetType().Name, input, _weightIh.Value, _biasIh?.Value), TaskBatch.Linear(GetType().Name, h, _weightHh.Value, _biasHh?.Value))
        : (Tensor.Linear(input, _weightIh.Value, _biasIh?.Value), Tensor.Linear(h, _weightHh.Value, _biasHh?.Value));

    /// <summary>The batch axis: 0, or 1 after the task dimension of a task-batched call.</summary>
    private protected static int BatchAxis => Binding.Tasks > 0 ? 1 : 0;

    /// <summary>
    /// Checks the input ([N, H_in] or unbatched [H_in]; task-batched [T, N, H_in] or [T, H_in]) and
    /// returns the batched view and whether the input was batched.
    /// </summary>
    private protected (Tensor Input, bool Batched) CheckInput(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int tasks = Binding.Tasks, ta = BatchAxis;
        if ((input.Rank != 1 + ta && input.Rank != 2 + ta) || input.Shape[-1] != InputSize || (tasks > 0 && input.Shape[0] != tasks))
        {
            throw new ArgumentException(tasks > 0
                ? $"{GetType().Name}, task-batched over {tasks} tasks, expected input [T={tasks}, N, {InputSize}] or [T={tasks}, {InputSize}]; got {input.Shape}."
                : $"{GetType().Name}: expected input [N, {InputSize}] or [{InputSize}]; got {input.Shape}.", nameof(input));
        }
        return input.Rank == 2 + ta ? (input, true) : (input.Unsqueeze(ta), false);
    }

    /// <summary>The state as [N, H] ([T, N, H] task-batched): zeros when null, else checked against the input's batch.</summary>
    private protected Tensor State(Tensor? state, Tensor input, bool batched, string name)
    {
        int ta = BatchAxis;
        int[] lead = ta == 1 ? [input.Shape[0]] : [];
        if (state is null)
        {
            return Tensor.Zeros([.. lead, input.Shape[ta], HiddenSize], input.DType, input.Device);
        }
        Shape expected = batched ? new Shape([.. lead, input.Shape[ta], HiddenSize]) : new Shape([.. lead, HiddenSize]);
        if (state.Shape != expected)
        {
            throw new ArgumentException($"{GetType().Name}: expected {name} of shape {expected}; got {state.Shape}.", name);
        }
        if (state.DType != input.DType || state.Device != input.Device)
        {
            throw new ArgumentException($"{GetType().Name}: {name} ({state.Describe()} on {state.Device}) must have the input's dtype and device ({input.DType.Name()} on {input.Device}).", name);
        }
        return batched ? state : state.Unsqueeze(ta);
    }

    /// <inheritdoc/>
    protected override void OnParameterReplaced(string name, Parameter? parameter)
    {
        switch (name)
        {
            case "weight_ih":
                _weightIh = parameter ?? throw new ArgumentNullException(nameof(parameter), "The cell needs weight_ih.");
                break;
            case "weight_hh":
                _weightHh = parameter ?? throw new ArgumentNullException(nameof(parameter), "The cell needs weight_hh.");
                break;
            case "bias_ih":
                _biasIh = parameter;
                break;
            case "bias_hh":
                _biasHh = parameter;
                break;
        }
    }
}

/// <summary>One Elman step (torch.nn.RNNCell): h' = act(W_ih x + b_ih + W_hh h + b_hh).</summary>
public sealed class RnnCell : RecurrentCellBase
{
    /// <summary>A cell from <paramref name="inputSize"/> to <paramref name="hiddenSize"/>, tanh or relu.</summary>
    public RnnCell(int inputSize, int hiddenSize, bool bias = true, bool relu = false, Generator? generator = null)
        : base(relu ? RecurrentMode.RnnRelu : RecurrentMode.RnnTanh, inputSize, hiddenSize, bias, generator)
    {
    }

    /// <summary>The next hidden state from a zero state.</summary>
    public override Tensor Forward(Tensor input) => Forward(input, null);

    /// <summary>The next hidden state.</summary>
    public Tensor Forward(Tensor input, Tensor? hx)
    {
        var (x, batched) = CheckInput(input);
        var h = State(hx, x, batched, nameof(hx));
        var (gi, gh) = Project(x, h);
        var next = Cells.Rnn(gi, gh, Mode);
        return batched ? next : next.Squeeze(BatchAxis);
    }
}

/// <summary>One GRU step (torch.nn.GRUCell).</summary>
public sealed class GruCell : RecurrentCellBase
{
    /// <summary>A cell from <paramref name="inputSize"/> to <paramref name="hiddenSize"/>.</summary>
    public GruCell(int inputSize, int hiddenSize, bool bias = true, Generator? generator = null)
        : base(RecurrentMode.Gru, inputSize, hiddenSize, bias, generator)
    {
    }

    /// <summary>The next hidden state from a zero state.</summary>
    public override Tensor Forward(Tensor input) => Forward(input, null);

    /// <summary>The next hidden state.</summary>
    public Tensor Forward(Tensor input, Tensor? hx)
    {
        var (x, batched) = CheckInput(input);
        var h = State(hx, x, batched, nameof(hx));
        var (gi, gh) = Project(x, h);
        var next = Cells.Gru(gi, gh, h, HiddenSize);
        return batched ? next : next.Squeeze(BatchAxis);
    }
}

/// <summary>One LSTM step (torch.nn.LSTMCell).</summary>
public sealed class LstmCell : RecurrentCellBase
{
    /// <summary>A cell from <paramref name="inputSize"/> to <paramref name="hiddenSize"/>.</summary>
    public LstmCell(int inputSize, int hiddenSize, bool bias = true, Generator? generator = null)
        : base(RecurrentMode.Lstm, inputSize, hiddenSize, bias, generator)
    {
    }

    /// <summary>The next hidden state from zero states.</summary>
    public override Tensor Forward(Tensor input) => Forward(input, null, null).H;

    /// <summary>The next hidden and cell states.</summary>
    public (Tensor H, Tensor C) Forward(Tensor input, Tensor? hx, Tensor? cx)
    {
        var (x, batched) = CheckInput(input);
        var h = State(hx, x, batched, nameof(hx));
        var c = State(cx, x, batched, nameof(cx));
        var (gi, gh) = Project(x, h);
        var (hNext, cNext) = Cells.Lstm(gi, gh, c, HiddenSize);
        return batched ? (hNext, cNext) : (hNext.Squeeze(BatchAxis), cNext.Squeeze(BatchAxis));
    }
}
