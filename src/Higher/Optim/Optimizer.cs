namespace Higher.Optim;

/// <summary>
/// Base of the torch.optim equivalents: parameter groups with per-group hyperparameters,
/// per-parameter state, and an update rule written once as a pure function of tensors
/// (<see cref="Update"/>). <see cref="Step()"/> applies the rule without recording; the
/// differentiable optimizers of Higher apply the same rule on the tape.
/// </summary>
public abstract class Optimizer : IHyperParameterGroups
{
    private readonly List<ParamGroup> _groups = [];
    private readonly Dictionary<Tensor, ParamState> _state = new(ReferenceEqualityComparer.Instance);

    /// <summary>Builds the optimizer over <paramref name="groups"/>; missing hyperparameters come from <paramref name="defaults"/>.</summary>
    protected Optimizer(IEnumerable<ParamGroup> groups, IReadOnlyDictionary<string, double> defaults)
    {
        ArgumentNullException.ThrowIfNull(groups);
        Defaults = new Dictionary<string, double>(defaults);
        foreach (var g in groups)
        {
            AddParamGroup(g);
        }
        if (_groups.Count == 0)
        {
            throw new ArgumentException($"{GetType().Name} got an empty parameter list.", nameof(groups));
        }
    }

    /// <summary>Wraps a flat parameter list as one group; an empty list is rejected, as torch rejects it.</summary>
    protected static IEnumerable<ParamGroup> OneGroup(IEnumerable<Tensor> parameters)
    {
        var group = new ParamGroup(parameters);
        if (group.Params.Count == 0)
        {
            throw new ArgumentException("The optimizer got an empty parameter list.", nameof(parameters));
        }
        return [group];
    }

    /// <summary>The hyperparameters a new group receives when it does not set them.</summary>
    public IReadOnlyDictionary<string, double> Defaults { get; }

    /// <summary>The parameter groups.</summary>
    public IReadOnlyList<ParamGroup> ParamGroups => _groups;

    /// <summary>Each group's hyperparameters (its <see cref="ParamGroup.Options"/>), for learning-rate schedulers.</summary>
    public IReadOnlyList<IDictionary<string, double>> HyperParameterGroups => _groups.Select(g => (IDictionary<string, double>)g.Options).ToList();

    /// <summary>Per-parameter state, keyed by the parameter tensor.</summary>
    public IReadOnlyDictionary<Tensor, ParamState> State => _state;

    /// <summary>
    /// Adds a group, filling missing hyperparameters from <see cref="Defaults"/> and validating them.
    /// An invalid group is refused before anything changes: neither the optimizer nor the group's
    /// options are touched.
    /// </summary>
    public void AddParamGroup(ParamGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        var filled = new ParamGroup(group.Params, group.Options);
        foreach (var (k, v) in Defaults)
        {
            filled.Options.TryAdd(k, v);
        }
        for (int i = 0; i < group.Params.Count; i++)
        {
            var p = group.Params[i] ?? throw new ArgumentNullException(nameof(group), $"{GetType().Name}: parameter {i} of the group is null.");
            if (!p.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"{GetType().Name} can only optimize floating-point tensors; parameter {i} of the group is {p.Describe()}.", nameof(group));
            }
            for (int j = 0; j < i; j++)
            {
                if (ReferenceEquals(group.Params[j], p))
                {
                    // It would be stepped twice per Step, through one shared state.
                    throw new ArgumentException($"{GetType().Name}: parameter {i} of the group ({p.Describe()}) is the same tensor as parameter {j}; list each parameter once.", nameof(group));
                }
            }
            if (!p.IsLeaf)
            {
                throw new ArgumentException($"{GetType().Name} can only optimize leaf tensors; a {p.Describe()} parameter was produced by {p.GradFnName}.");
            }
            foreach (var other in _groups)
            {
                if (other.Params.Any(q => ReferenceEquals(q, p)))
                {
                    throw new ArgumentException($"A {p.Describe()} parameter appears in more than one parameter group.");
                }
            }
        }
        Validate(filled);
        foreach (var (k, v) in Defaults)
        {
            group.Options.TryAdd(k, v);
        }
        _groups.Add(group);
    }

    // Hyperparameters whose meaning is the same in every optimizer that has them, checked once here.
    private static readonly string[] NonNegative = ["lr", "eps", "weight_decay", "momentum", "lr_decay", "initial_accumulator_value", "momentum_decay"];
    private static readonly string[] Betas = ["beta1", "beta2"];

    /// <summary>
    /// Rejects invalid hyperparameters with a message naming the value. The base checks those that
    /// mean the same everywhere (lr, eps, weight decay, momentum... ≥ 0; betas in [0, 1)); subclasses
    /// add their own.
    /// </summary>
    protected virtual void Validate(ParamGroup group)
    {
        ArgumentNullException.ThrowIfNull(group);
        foreach (var name in NonNegative)
        {
            Require(group, name, v => v >= 0, "must be ≥ 0");
        }
        foreach (var name in Betas)
        {
            Require(group, name, v => v is >= 0 and < 1, "must lie in [0, 1)");
        }
    }

    /// <summary>
    /// Validates hyperparameters written after construction (by hand, a scheduler, or an override
    /// applied back), naming the call and the group: the same rules as <see cref="AddParamGroup"/>.
    /// </summary>
    internal void CheckHyperParameters(IEnumerable<KeyValuePair<string, double>> options, string call, int groupIndex) =>
        CheckGroup(new ParamGroup([], options.ToDictionary(kv => kv.Key, kv => kv.Value)), call, groupIndex);

    private void CheckGroup(ParamGroup group, string call, int groupIndex)
    {
        try
        {
            Validate(group);
        }
        catch (ArgumentException e)
        {
            throw new ArgumentException($"{call}: parameter group {groupIndex}: {e.Message}", e);
        }
    }

    /// <summary>Throws unless <paramref name="check"/> holds for the group's hyperparameter <paramref name="name"/>.</summary>
    protected void Require(ParamGroup group, string name, Func<double, bool> check, string rule)
    {
        ArgumentNullException.ThrowIfNull(group);
        ArgumentNullException.ThrowIfNull(check);
        if (group.Options.TryGetValue(name, out var v) && !check(v))
        {
            throw new ArgumentException($"Invalid {name} for {GetType().Name}: {v} ({name} {rule}).");
        }
    }

    /// <summary>
    /// The update rule: the new value of <paramref name="param"/> given its gradient, its state
    /// (whose tensors the rule replaces, never mutates; it also advances <see cref="ParamState.Step"/>)
    /// and the hyperparameters. Written in differentiable tensor ops only.
    /// </summary>
    public abstract Tensor Update(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper);

    /// <summary>
    /// <see cref="Update"/> as one backend kernel for <see cref="Step()"/>, which records nothing: the
    /// same new value and state, the same bits; null where the rule has no such kernel or the
    /// hyperparameters need the tensor ops (a tensor hyperparameter). The differentiable optimizer
    /// always uses <see cref="Update"/>.
    /// </summary>
    internal virtual Tensor? FusedUpdate(Tensor param, Tensor grad, ParamState state, IHyperParameters hyper) => null;

    /// <summary>
    /// The gradient an update rule descends: -∇ when "maximize" is set, plus the L2 term
    /// weight_decay·p when it is non-zero (torch's coupled weight decay).
    /// </summary>
    protected static Tensor DirectedGradient(Tensor param, Tensor grad, IHyperParameters hyper)
    {
        ArgumentNullException.ThrowIfNull(grad);
        ArgumentNullException.ThrowIfNull(hyper);
        var g = hyper.Flag("maximize") ? grad.Neg() : grad;
        var wd = hyper["weight_decay"];
        return wd.IsTensor || wd.Value != 0 ? g + wd * param : g;
    }

    /// <summary>The state of <paramref name="param"/>, created empty on first use.</summary>
    public ParamState StateFor(Tensor param)
    {
        if (!_state.TryGetValue(param, out var s))
        {
            s = new ParamState();
            _state[param] = s;
        }
        return s;
    }

    /// <summary>
    /// Applies one update to every parameter that has a gradient (a step where none has one changes
    /// nothing, as in torch). All updates are computed (on copies of the state) before the first
    /// parameter changes: a rule that fails on one parameter throws naming it and leaves every
    /// parameter and every state as it was. A parameter that a module no longer uses (its
    /// <see cref="Nn.Parameter.Data"/> was replaced, as Module.To(...) does) is refused: the
    /// gradients go to the new tensor, and the step would update the old one, silently.
    /// </summary>
    public virtual void Step()
    {
        using var _ = Autograd.NoGrad();
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            // Hyperparameters may have been written since the group was added (a NaN lr from a schedule).
            CheckGroup(_groups[gi], $"{GetType().Name}.Step", gi);
        }
        var pending = new List<(Tensor Param, Tensor Value, ParamState State)>();
        int index = -1;
        for (int gi = 0; gi < _groups.Count; gi++)
        {
            var group = _groups[gi];
            var hyper = new GroupHyperParameters(group);
            foreach (var p in group.Params)
            {
                index++;
                if (Nn.ReplacedTensors.TryGet(p, out var replacement))
                {
                    throw new InvalidOperationException(
                        $"{GetType().Name}.Step: parameter {index} (group {gi}, {p.Describe()} on {p.Device}) is no longer its module's parameter: it was replaced by a {replacement} tensor " +
                        "(Module.To(...) or Parameter.Data = ...), so the model's gradients go elsewhere and the step would update a tensor nothing uses. Build the optimizer over model.Parameters() after the move.");
                }
                if (p.Grad is not { } g)
                {
                    continue;
                }
                var state = _state.TryGetValue(p, out var s) ? s.ShallowCopy() : new ParamState();
                Tensor updated;
                try
                {
                    updated = FusedUpdate(p.Detach(), g.Detach(), state, hyper) ?? Update(p.Detach(), g.Detach(), state, hyper);
                    if (updated.Shape != p.Shape)
                    {
                        throw new InvalidOperationException($"the update rule returned {updated.Shape} for a {p.Shape} parameter.");
                    }
                }
                catch (Exception e) when (e is ArgumentException or InvalidOperationException or NotSupportedException or KeyNotFoundException)
                {
                    string message = $"{GetType().Name}.Step: parameter {index} (group {gi}, {p.Describe()} on {p.Device}) failed, and no parameter was updated: {e.Message}";
                    throw e is ArgumentException ? new ArgumentException(message, e) : new InvalidOperationException(message, e);
                }
                if (AnomalyScope.On && AnomalyScope.FirstNonFinite(updated) is var bad and >= 0)
                {
                    throw new AnomalyException(
                        $"Anomaly: {GetType().Name}.Step would write {updated.ToDoubleArray()[bad]} at element {bad} of parameter {index} (group {gi}, {p.Describe()} on {p.Device}); no parameter was updated.");
                }
                pending.Add((p, updated, state));
            }
        }
        foreach (var (p, value, state) in pending)
        {
            p.CopyFrom(value);
            StateFor(p).Assign(state);
        }
    }

    /// <summary>Evaluates <paramref name="closure"/> with gradients enabled, then steps; returns the closure's loss.</summary>
    public Tensor Step(Func<Tensor> closure)
    {
        ArgumentNullException.ThrowIfNull(closure);
        Tensor loss;
        using (Autograd.EnableGrad())
        {
            loss = closure();
        }
        Step();
        return loss;
    }

    /// <summary>Clears the gradients of every parameter (sets them to null, as PyTorch does by default).</summary>
    public void ZeroGrad()
    {
        foreach (var g in _groups)
        {
            foreach (var p in g.Params)
            {
                p.Grad = null;
            }
        }
    }

    /// <summary>
    /// A snapshot of hyperparameters and state: groups list their options and parameter indices
    /// (parameters are numbered across groups in order, as PyTorch does); state tensors are copied.
    /// </summary>
    public OptimizerStateDict StateDict()
    {
        var groups = new List<(Dictionary<string, double> Options, int[] Params)>();
        var state = new Dictionary<int, ParamState>();
        int index = 0;
        foreach (var g in _groups)
        {
            var ids = new int[g.Params.Count];
            for (int i = 0; i < ids.Length; i++, index++)
            {
                ids[i] = index;
                if (_state.TryGetValue(g.Params[i], out var s))
                {
                    state[index] = s.DetachedCopy();
                }
            }
            groups.Add((new Dictionary<string, double>(g.Options), ids));
        }
        return new OptimizerStateDict(groups, state);
    }

    /// <summary>Restores a snapshot taken from an optimizer with the same group sizes; throws naming the mismatch and changes nothing.</summary>
    public void LoadStateDict(OptimizerStateDict stateDict)
    {
        ArgumentNullException.ThrowIfNull(stateDict);
        if (stateDict.Groups.Count != _groups.Count)
        {
            throw new ArgumentException($"LoadStateDict: the state has {stateDict.Groups.Count} parameter groups but {GetType().Name} has {_groups.Count}.", nameof(stateDict));
        }
        for (int i = 0; i < _groups.Count; i++)
        {
            if (stateDict.Groups[i].Params.Length != _groups[i].Params.Count)
            {
                throw new ArgumentException($"LoadStateDict: group {i} has {stateDict.Groups[i].Params.Length} parameters in the state but {_groups[i].Params.Count} here.", nameof(stateDict));
            }
            var ids = stateDict.Groups[i].Params;
            for (int j = 0; j < ids.Length; j++)
            {
                if (!stateDict.State.TryGetValue(ids[j], out var s))
                {
                    continue;
                }
                var p = _groups[i].Params[j];
                foreach (var (key, t) in s.Tensors)
                {
                    // Per-element state has the parameter's shape; scalar state (a step size, a count) has one element.
                    // A floating-point state of another float dtype is converted to the parameter's, as torch does.
                    if (t is null || (t.Shape != p.Shape && t.Numel != 1) || (t.DType != p.DType && !(t.DType.IsFloatingPoint() && p.DType.IsFloatingPoint())))
                    {
                        throw new ArgumentException(
                            $"LoadStateDict for {GetType().Name}: state '{key}' of parameter {ids[j]} (group {i}) is {(t is null ? "null" : $"{t.Shape} {t.DType.Name()}")}, but the parameter is {p.Describe()}.", nameof(stateDict));
                    }
                }
            }
        }
        _state.Clear();
        for (int i = 0; i < _groups.Count; i++)
        {
            var (options, ids) = stateDict.Groups[i];
            _groups[i].Options.Clear();
            foreach (var (k, v) in options)
            {
                _groups[i].Options[k] = v;
            }
            for (int j = 0; j < ids.Length; j++)
            {
                if (stateDict.State.TryGetValue(ids[j], out var s))
                {
                    var p = _groups[i].Params[j];
                    var copy = s.DetachedCopy(p.Device);
                    foreach (var key in copy.Tensors.Keys.ToArray())
                    {
                        copy.Tensors[key] = copy.Tensors[key].To(p.DType);
                    }
                    _state[p] = copy;
                }
            }
        }
    }
}

/// <summary>An optimizer's hyperparameters and state, detached from any parameter identity.</summary>
/// <param name="Groups">Each group's options and the indices of its parameters.</param>
/// <param name="State">State by parameter index.</param>
public sealed record OptimizerStateDict(
    IReadOnlyList<(Dictionary<string, double> Options, int[] Params)> Groups,
    IReadOnlyDictionary<int, ParamState> State);

/// <summary>
/// Parameter groups whose hyperparameters are read and written by name ("lr", "momentum", "beta1", ...):
/// what a learning-rate scheduler drives. <see cref="Optimizer"/> implements it, and so can a
/// differentiable optimizer that keeps its own copies of the groups.
/// </summary>
public interface IHyperParameterGroups
{
    /// <summary>One dictionary per group, live: writes change the hyperparameters the next step uses.</summary>
    IReadOnlyList<IDictionary<string, double>> HyperParameterGroups { get; }
}
