namespace Higher.Nn;

/// <summary>
/// The thread-local table that maps parameters and buffers to the tensors a functional call
/// supplies. Bindings nest: an inner binding hides an outer one for the handles it maps.
/// </summary>
public static class Binding
{
    [ThreadStatic]
    private static Frame? t_top;

    internal sealed class Frame(IReadOnlyDictionary<Parameter, Tensor> parameters, Dictionary<ModuleBuffer, Tensor?>? buffers, Frame? parent)
    {
        public IReadOnlyDictionary<Parameter, Tensor> Parameters { get; } = parameters;
        public Dictionary<ModuleBuffer, Tensor?>? Buffers { get; } = buffers;
        public Frame? Parent { get; } = parent;
    }

    /// <summary>True when a functional call is in progress on this thread.</summary>
    public static bool IsActive => t_top is not null;

    /// <summary>
    /// Binds <paramref name="parameters"/> (and, when given, <paramref name="buffers"/>, whose entries
    /// receive the writes) on this thread until the returned scope is disposed.
    /// </summary>
    public static Scope Bind(IReadOnlyDictionary<Parameter, Tensor> parameters, Dictionary<ModuleBuffer, Tensor?>? buffers = null)
    {
        ArgumentNullException.ThrowIfNull(parameters);
        var previous = t_top;
        t_top = new Frame(parameters, buffers, previous);
        return new Scope(previous);
    }

    internal static bool TryResolve(Parameter p, out Tensor value)
    {
        for (var f = t_top; f is not null; f = f.Parent)
        {
            if (f.Parameters.TryGetValue(p, out value!))
            {
                return true;
            }
        }
        value = null!;
        return false;
    }

    internal static bool TryResolve(ModuleBuffer b, out Tensor? value)
    {
        for (var f = t_top; f is not null; f = f.Parent)
        {
            if (f.Buffers is not null && f.Buffers.TryGetValue(b, out value))
            {
                return true;
            }
        }
        value = null;
        return false;
    }

    internal static bool TrySet(ModuleBuffer b, Tensor? value)
    {
        for (var f = t_top; f is not null; f = f.Parent)
        {
            if (f.Buffers is not null && f.Buffers.ContainsKey(b))
            {
                f.Buffers[b] = value;
                return true;
            }
        }
        return false;
    }

    /// <summary>Restores the bindings in force before <see cref="Bind"/>.</summary>
    public readonly struct Scope : IDisposable
    {
        private readonly Frame? _previous;

        internal Scope(Frame? previous) => _previous = previous;

        /// <summary>Unbinds.</summary>
        public void Dispose() => t_top = _previous;
    }
}
