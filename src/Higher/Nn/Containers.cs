using System.Globalization;

namespace Higher.Nn;

/// <summary>Applies its modules in order (torch.nn.Sequential); children are named "0", "1", ...</summary>
public sealed class Sequential : Module
{
    private readonly List<Module> _layers = [];

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
    public override Tensor Forward(Tensor input)
    {
        var x = input;
        foreach (var m in _layers)
        {
            x = m.Forward(x);
        }
        return x;
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
