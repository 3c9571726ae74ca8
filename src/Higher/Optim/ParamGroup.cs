namespace Higher.Optim;

/// <summary>
/// A group of parameters sharing hyperparameters, as in torch.optim. Hyperparameters are read and
/// written by their PyTorch names ("lr", "momentum", "weight_decay", "beta1", "beta2", "eps", ...);
/// flags are 0 or 1 ("nesterov", "amsgrad", "maximize", "centered").
/// </summary>
public sealed class ParamGroup
{
    /// <summary>A group of <paramref name="parameters"/> with optional per-group hyperparameters.</summary>
    public ParamGroup(IEnumerable<Tensor> parameters, IReadOnlyDictionary<string, double>? options = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        Params = parameters.ToList();
        Options = options is null ? [] : new Dictionary<string, double>(options);
    }

    /// <summary>The parameters (leaf tensors) of the group.</summary>
    public List<Tensor> Params { get; }

    /// <summary>Hyperparameters by name.</summary>
    public Dictionary<string, double> Options { get; }

    /// <summary>Reads or writes a hyperparameter by name; reading a missing one throws naming the known ones.</summary>
    public double this[string name]
    {
        get => Options.TryGetValue(name, out var v) ? v
            : throw new KeyNotFoundException($"This parameter group has no hyperparameter '{name}'; it has: {string.Join(", ", Options.Keys)}.");
        set => Options[name] = value;
    }

    /// <summary>A hyperparameter flag (non-zero is true).</summary>
    public bool Flag(string name) => Options.TryGetValue(name, out var v) && v != 0;
}

/// <summary>
/// Per-parameter optimizer state: the step count and named tensors (momentum buffers, moments).
/// Update rules replace the tensors rather than mutate them, so the differentiable optimizer can
/// keep each step's state on the tape.
/// </summary>
public sealed class ParamState
{
    /// <summary>Number of steps taken for this parameter.</summary>
    public long Step { get; set; }

    /// <summary>Named state tensors.</summary>
    public Dictionary<string, Tensor> Tensors { get; } = [];

    /// <summary>Reads or writes a state tensor.</summary>
    public Tensor this[string name]
    {
        get => Tensors[name];
        set => Tensors[name] = value;
    }

    /// <summary>True if the state has <paramref name="name"/>.</summary>
    public bool Has(string name) => Tensors.ContainsKey(name);

    /// <summary>A copy sharing the tensors (an update rule replaces them, never mutates them): the working state of a step that may still fail.</summary>
    internal ParamState ShallowCopy()
    {
        var copy = new ParamState { Step = Step };
        foreach (var (k, v) in Tensors)
        {
            copy.Tensors[k] = v;
        }
        return copy;
    }

    /// <summary>Replaces this state's step count and tensors with <paramref name="source"/>'s.</summary>
    internal void Assign(ParamState source)
    {
        Step = source.Step;
        Tensors.Clear();
        foreach (var (k, v) in source.Tensors)
        {
            Tensors[k] = v;
        }
    }

    /// <summary>A copy whose tensors are detached from any graph (optionally moved to a device).</summary>
    public ParamState DetachedCopy(Device? device = null)
    {
        var copy = new ParamState { Step = Step };
        using (Autograd.NoGrad())
        {
            foreach (var (k, v) in Tensors)
            {
                var t = v.Detach();
                copy.Tensors[k] = device is { } d ? t.To(d) : t.Clone();
            }
        }
        return copy;
    }
}

/// <summary>The hyperparameters an update rule sees: numbers, or tensors where overridden.</summary>
public interface IHyperParameters
{
    /// <summary>The value of <paramref name="name"/>.</summary>
    HyperValue this[string name] { get; }

    /// <summary>A flag (non-zero is true); flags are never tensors.</summary>
    bool Flag(string name);
}

/// <summary>A parameter group's own numbers as <see cref="IHyperParameters"/>.</summary>
public sealed class GroupHyperParameters(ParamGroup group) : IHyperParameters
{
    /// <inheritdoc/>
    public HyperValue this[string name] => group[name];

    /// <inheritdoc/>
    public bool Flag(string name) => group.Flag(name);
}
