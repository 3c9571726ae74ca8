using System.Globalization;

namespace Higher.Nn;

/// <summary>Applies its modules in order (torch.nn.Sequential); children are named "0", "1", ...</summary>
public sealed class Sequential : Module
{
    private readonly List<Module> _layers = [];

    // The message a released activation names, made once per position (not per forward).
    private string[] _freedBy = [];

    /// <summary>A chain of <paramref name="modules"/>.</summary>
    public Sequential(params IEnumerable<Module> modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        foreach (var m in modules)
        {
            Add(m);
        }
    }

    /// <summary>Number of modules.</summary>
    public int Count => _layers.Count;

    /// <summary>The module at <paramref name="index"/> (negative counts from the end).</summary>
    public Module this[int index] => _layers[index < 0 ? index + _layers.Count : index];

    /// <summary>Appends <paramref name="module"/> (named by its position) and returns this container.</summary>
    public Sequential Add(Module module)
    {
        _layers.Add(RegisterModule(_layers.Count.ToString(CultureInfo.InvariantCulture), module));
        return this;
    }

    /// <inheritdoc/>
    internal override bool KeepsNoActivations => _layers.TrueForAll(static m => m.KeepsNoActivations);

    /// <summary>
    /// Runs the layers in order. An activation between two of Higher.Nn's own layers (see
    /// <see cref="Module.KeepsNoActivations"/>) is freed as soon as the layer after it has returned, when
    /// nothing can read it again: no tape node saved it (a convolution's or linear layer's input, a
    /// ReLU's output stay), the next layer did not return a view of it, and it was made during this
    /// call (never the input or a weight). Its storage goes back to the buffer pool at once, as an
    /// unreferenced tensor does in PyTorch, instead of waiting for the garbage collector or the end of
    /// a scope.
    /// </summary>
    /// <remarks>
    /// A <see cref="Relu"/> directly followed by a <see cref="MaxPool2d"/> runs as the pooling then the ReLU, which
    /// gives the same bits: ReLU is max(x, 0), monotone, so the maximum of a window's ReLUs is the ReLU of its maximum,
    /// at the same first position wherever that maximum is positive (or NaN); where it is not, every gradient of the
    /// window is zero either way. The ReLU, its saved output and its gradient's passes then cover the pooled map (a
    /// quarter of the elements for 2×2 windows) instead of the full one, and the full-size map before the pair is
    /// freed as soon as the pooling has read it.
    /// </remarks>
    public override Tensor Forward(Tensor input)
    {
        int newest = VersionCounter.NewestId;
        var x = input;
        Module? previous = null;
        for (int i = 0; i < _layers.Count; i++)
        {
            var m = _layers[i];
            if (m is Relu && i + 1 < _layers.Count && _layers[i + 1] is MaxPool2d pool)
            {
                var pooled = pool.Forward(x);
                if (previous is not null && previous.KeepsNoActivations)
                {
                    FreeActivation(x, pooled, newest, i);
                }
                x = m.Forward(pooled);
                FreeActivation(pooled, x, newest, i + 1);
                previous = pool;
                i++;
                continue;
            }
            var y = m.Forward(x);
            if (previous is not null && previous.KeepsNoActivations && m.KeepsNoActivations)
            {
                FreeActivation(x, y, newest, i);
            }
            previous = m;
            x = y;
        }
        return x;
    }

    private void FreeActivation(Tensor activation, Tensor next, int newest, int consumer)
    {
        var family = activation.Version;
        if (family.Id > newest && !ReferenceEquals(family, next.Version))
        {
            activation.FreeIntermediate(FreedBy(consumer));
        }
    }

    private string FreedBy(int consumer)
    {
        var messages = _freedBy;
        if (messages.Length != _layers.Count)
        {
            messages = _freedBy = new string[_layers.Count];
        }
        return messages[consumer] ??= _layers[consumer] is Relu && consumer + 1 < _layers.Count && _layers[consumer + 1] is MaxPool2d
            ? $"Sequential (the output of its layer {consumer - 1}, {_layers[consumer - 1].GetType().Name}, which only layer {consumer + 1}, MaxPool2d, read: it runs before layer {consumer}'s ReLU, with the same bits; freed once nothing could read it)"
            : _layers[consumer] is MaxPool2d && _layers[consumer - 1] is Relu
            ? $"Sequential (the pooled map of its layer {consumer}, MaxPool2d, which only layer {consumer - 1}, Relu, read after it; freed once nothing could read it)"
            : $"Sequential (the output of its layer {consumer - 1}, {_layers[consumer - 1].GetType().Name}, which only layer {consumer}, {_layers[consumer].GetType().Name}, read; freed once nothing could read it)";
    }
}

/// <summary>Holds submodules in a list (torch.nn.ModuleList); children are named "0", "1", ... It has no forward pass of its own.</summary>
public sealed class ModuleList : Module
{
    private readonly List<Module> _items = [];

    /// <summary>A list of <paramref name="modules"/>.</summary>
    public ModuleList(params IEnumerable<Module> modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        foreach (var m in modules)
        {
            Add(m);
        }
    }

    /// <summary>Number of modules.</summary>
    public int Count => _items.Count;

    /// <summary>The module at <paramref name="index"/> (negative counts from the end).</summary>
    public Module this[int index] => _items[index < 0 ? index + _items.Count : index];

    /// <summary>Appends <paramref name="module"/> and returns this list.</summary>
    public ModuleList Add(Module module)
    {
        _items.Add(RegisterModule(_items.Count.ToString(CultureInfo.InvariantCulture), module));
        return this;
    }

    /// <summary>Appends every module of <paramref name="modules"/>.</summary>
    public ModuleList AddRange(IEnumerable<Module> modules)
    {
        ArgumentNullException.ThrowIfNull(modules);
        foreach (var m in modules)
        {
            Add(m);
        }
        return this;
    }
}
