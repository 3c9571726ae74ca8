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
            var first = new HyperValue[values.Length];
            var second = new HyperValue[values.Length];
            for (int i = 0; i < values.Length; i++)
            {
                var t = values[i].Tensor ?? throw new ArgumentException($"Override '{name}' takes 2-element tensors; set '{pair.First}' and '{pair.Second}' for numbers.", nameof(values));
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
        _values[name] = values;
        return this;
    }

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

    /// <summary>Checks that every entry has one value or <paramref name="groups"/> values.</summary>
    internal void Validate(int groups)
    {
        foreach (var (k, v) in _values)
        {
            if (v.Length != 1 && v.Length != groups)
            {
                throw new ArgumentException($"Override '{k}' has {v.Length} values, but the optimizer has {groups} parameter groups: give one value or one per group.");
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
