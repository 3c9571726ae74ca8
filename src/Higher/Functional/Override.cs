using Higher.Optim;

namespace Higher.Functional;

/// <summary>
/// Hyperparameter overrides for a differentiable optimizer (higher's <c>override</c>): each name maps
/// to one value for all parameter groups, or one value per group. Values may be tensors that require
/// grad (meta-learned learning rates, betas, momentum). Tuple hyperparameters can be given whole
/// ("betas", "etas", "step_sizes" as 2-element tensors) or by component ("beta1", "beta2", ...).
/// </summary>
public sealed class Override
{
    private static readonly Dictionary<string, (string First, string Second)> Pairs = new()
    {
        ["betas"] = ("beta1", "beta2"),
        ["etas"] = ("eta_minus", "eta_plus"),
        ["step_sizes"] = ("step_size_min", "step_size_max"),
    };

    private readonly Dictionary<string, HyperValue[]> _values = [];

    /// <summary>Names overridden.</summary>
    public IEnumerable<string> Keys => _values.Keys;

    /// <summary>The values of <paramref name="name"/> (one, or one per group).</summary>
    public IReadOnlyList<HyperValue> this[string name] => _values[name];

    /// <summary>Sets <paramref name="name"/> to one value for all groups or one per group. Returns this override.</summary>
    public Override Set(string name, params HyperValue[] values)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0)
        {
            throw new ArgumentException($"Override '{name}' needs at least one value.", nameof(values));
        }
        if (Pairs.TryGetValue(name, out var pair))
        {
            return SetPair(name, values.Select(v => v.Tensor ?? throw new ArgumentException($"Override '{name}' takes 2-element tensors; set '{pair.First}' and '{pair.Second}' for numbers.", nameof(values))).ToArray());
        }
        for (int i = 0; i < values.Length; i++)
        {
            if (!values[i].IsTensor && !double.IsFinite(values[i].Value))
            {
                // A NaN or infinite hyperparameter would poison every weight it touches, silently.
                throw new ArgumentException($"Override '{name}': value {i} is {values[i]}; a hyperparameter must be finite.", nameof(values));
            }
        }
        _values[name] = values;
        return this;
    }

    private Override SetPair(string name, Tensor[] values)
    {
        var pair = Pairs[name];
        if (values.Length == 0)
        {
            throw new ArgumentException($"Override '{name}' needs at least one value.", nameof(values));
        }
        var first = new HyperValue[values.Length];
        var second = new HyperValue[values.Length];
        for (int i = 0; i < values.Length; i++)
        {
            var t = values[i] ?? throw new ArgumentNullException(nameof(values));
            if (t.Numel != 2)
            {
                throw new ArgumentException($"Override '{name}' takes 2-element tensors; got {t.Shape}.", nameof(values));
            }
            var flat = t.Reshape(2);
            first[i] = flat.Select(0, 0);
            second[i] = flat.Select(0, 1);
        }
        _values[pair.First] = first;
        _values[pair.Second] = second;
        return this;
    }

    /// <summary>
    /// Sets <paramref name="name"/> from tensors (one for all groups or one per group): one-element
    /// tensors, or for "betas", "etas" and "step_sizes" 2-element tensors split into their components.
    /// Returns this override.
    /// </summary>
    public Override Set(string name, params Tensor[] values)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(values);
        // A 2-element tensor cannot become a HyperValue, so pairs are split before any conversion.
        return Pairs.ContainsKey(name) ? SetPair(name, values) : Set(name, values.Select(v => (HyperValue)v).ToArray());
    }

    /// <summary>
    /// Sets <paramref name="name"/> to one value per task for a task-batched inner loop
    /// (<see cref="InnerLoop.CreateBatched"/>): each tensor is [T] (one for all parameter groups, or one per
    /// group), and task t's update uses element t, so each task's hyperparameter receives its own
    /// gradient. For "betas", "etas" and "step_sizes" the tensors are [T, 2], split into their
    /// components. A plain (task-by-task) optimizer refuses per-task values. Returns this override.
    /// </summary>
    public Override SetPerTask(string name, params Tensor[] values)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        ArgumentNullException.ThrowIfNull(values);
        if (values.Length == 0)
        {
            throw new ArgumentException($"Override.SetPerTask '{name}' needs at least one value.", nameof(values));
        }
        bool pair = Pairs.TryGetValue(name, out var names);
        var first = new HyperValue[values.Length];
        var second = pair ? new HyperValue[values.Length] : null;
        for (int i = 0; i < values.Length; i++)
        {
            var t = values[i] ?? throw new ArgumentNullException(nameof(values), $"Override.SetPerTask '{name}': value {i} is null.");
            if (pair ? t.Rank != 2 || t.Shape[1] != 2 || t.Shape[0] < 1 : t.Rank != 1 || t.Shape[0] < 1)
            {
                throw new ArgumentException(
                    $"Override.SetPerTask '{name}': value {i} is {t.Describe()}; per-task values are {(pair ? "[T, 2] (T tasks, two components)" : "[T] (one per task)")}.", nameof(values));
            }
            if (!t.DType.IsFloatingPoint())
            {
                throw new ArgumentException($"Override.SetPerTask '{name}': value {i} is {t.Describe()}; a hyperparameter must be floating-point.", nameof(values));
            }
            if (pair)
            {
                first[i] = HyperValue.PerTask(t.Select(1, 0));
                second![i] = HyperValue.PerTask(t.Select(1, 1));
            }
            else
            {
                first[i] = HyperValue.PerTask(t);
            }
        }
        if (pair)
        {
            _values[names.First] = first;
            _values[names.Second] = second!;
        }
        else
        {
            _values[name] = first;
        }
        return this;
    }

    /// <summary>
    /// Checks the per-task entries against the task count of the optimizer (0: a plain one, which
    /// refuses them), naming the call.
    /// </summary>
    internal void ValidateTasks(int tasks, string call)
    {
        foreach (var (k, v) in _values)
        {
            for (int i = 0; i < v.Length; i++)
            {
                if (v[i].Tensor is not { Rank: 1 } t)
                {
                    continue;
                }
                if (tasks == 0)
                {
                    throw new ArgumentException($"{call}: override '{k}' holds per-task values {t.Shape}, which only a task-batched inner loop (InnerLoop.CreateBatched) can use; give this optimizer one value per group.");
                }
                if (t.Shape[0] != tasks)
                {
                    throw new ArgumentException($"{call}: override '{k}' (value {i}) has {t.Shape[0]} per-task values, but the inner loop batches {tasks} tasks.");
                }
            }
        }
    }
    /// <summary>Removes every entry (a checkpointed unroll resets the overrides of each replayed step).</summary>
    internal void Clear() => _values.Clear();

    /// <summary>True if <paramref name="name"/> is overridden.</summary>
    public bool Contains(string name) => _values.ContainsKey(name);

    /// <summary>Copies every entry of <paramref name="other"/> over this one's (later wins, as higher's step override).</summary>
    public void Merge(Override other)
    {
        ArgumentNullException.ThrowIfNull(other);
        foreach (var (k, v) in other._values)
        {
            _values[k] = v;
        }
    }

    /// <summary>Checks that every entry names a hyperparameter of the groups and has one value or one per group.</summary>
    internal void Validate(IReadOnlyList<IDictionary<string, double>> groups)
    {
        foreach (var (k, v) in _values)
        {
            if (groups.Count > 0 && !groups.Any(g => g.ContainsKey(k)))
            {
                // A misspelt name would otherwise be ignored silently.
                throw new ArgumentException($"Override '{k}' names no hyperparameter of this optimizer; its groups have: {string.Join(", ", groups[0].Keys)}.");
            }
            if (v.Length != 1 && v.Length != groups.Count)
            {
                throw new ArgumentException($"Override '{k}' has {v.Length} values, but the optimizer has {groups.Count} parameter groups: give one value or one per group.");
            }
        }
    }

    /// <summary>The value for <paramref name="group"/>, if overridden.</summary>
    internal bool TryGet(string name, int group, out HyperValue value)
    {
        if (_values.TryGetValue(name, out var v))
        {
            value = v.Length == 1 ? v[0] : v[group];
            return true;
        }
        value = default;
        return false;
    }
}
